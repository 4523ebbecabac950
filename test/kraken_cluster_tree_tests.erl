%% @doc A proxy below proxies in the same Erlang cluster (docs/cluster.md,
%% "A proxy below a proxy"), on real nodes started by bin/kraken on
%% loopback: cores c1 and c2, proxies p1 and p2 below them, and proxy q1
%% with `parents [p1, p2]': q1's engine links to p1 and p2 only (each owns a
%% share of the topics by the same hash as cores), and they subscribe and
%% forward for it at the cores.  Two more: r1 with `parents [q1, p2]' (three
%% levels of proxies through q1), and s1 with `parents [c1]' (a core as a
%% parent).
%%
%%   - each check below that concerns them also runs through r1 and s1:
%%     exactly once (clients on r1 and s1, topics of every route of r1, q1
%%     and the cores), a publish answered once the core routed it (three
%%     hops, and through c1), retro_subscribe on r1 and on s1 (every entry
%%     since the horizon once, in each publisher's order, never the asker's
%%     own), kill -9 of c2 (VALUE lost passed down two levels to r1, and
%%     from c1 to s1: only the holders of c2's topics go), kill -9 of q1
%%     (r1's clients of topics through q1 disconnected with a log line, its
%%     client of p2's topics undisturbed);
%%   - membership: q1's links are up to p1 and p2 only; the cores' view
%%     settles without waiting for q1 (it takes no part in moves);
%%   - exactly once: clients on every node, q1 among them, subscribed to
%%     topics spread over both cores and both parents, each publishing:
%%     each (entry, topic) reaches each subscriber once, never its publisher;
%%     a publish on q1 is answered only once the owning core routed it;
%%   - retro_subscribe on q1 for topics nobody on q1 held, published after
%%     the horizon on a core, on p1 (the parent), on p2 and on q1 itself:
%%     each once, in each publisher's order (q1 asks its parent, which asks
%%     the cores for what it did not hold, and relays the answer; a topic the
%%     parent held since before the horizon comes from its retention), then
%%     live; NOT_FOUND when the owning core lost entries;
%%   - the same across a move of the topics between cores (c2 drained,
%%     entries before and after it): the parent asks each core that owned a
%%     topic since the horizon (link_entered) and relays per (entry, topic):
%%     each once, never q1's own, no NOT_FOUND; then c2 is undrained;
%%   - kill -9 of p1: within 3 s q1's clients that held a topic through p1
%%     are disconnected with a log line naming p1, the others are not; the
%%     topics go to p2;
%%   - p1 comes back while clients of c1, p2 and q1 publish without a pause
%%     to topics that two clients of q1 hold (through p2, some hashing to
%%     p1): nothing moves (sticky parents), nobody is disconnected, each
%%     holder gets every (entry, topic) once; a topic subscribed afterwards
%%     that hashes to p1 goes through p1 (cluster_status), and the held ones
%%     go by the hash again once released; the unsubscribe race: the
%%     holders leave while p2 is slow to read q1's link (it holds it for a
%%     publish waiting for c2, stopped): the topics stay pinned to p2 until
%%     p2 processed the unsubscribes, a new holder subscribes at p2 again
%%     and gets an entry published meanwhile once;
%%   - core c2's engine hangs (SIGSTOP) while q1 waits for its confirmation
%%     (a publish held at p1, a subscribe at p2): p1 answers q1's publish
%%     with the error (its publisher gets it, then the close), and a publish
%%     for c1 sent behind it STORED, p2 names the
%%     topic lost (its subscriber is disconnected), q1's links stay: its
%%     client of c1's topics through both parents is not disturbed and gets
%%     what c1 published meanwhile;
%%   - kill -9 of core c2: within 3 s q1's clients holding one of its topics
%%     (through either parent) are disconnected with a log line, the others
%%     are not (the parents tell q1 which topics they lost); a
%%     retro_subscribe on q1 from before the kill is NOT_FOUND for a topic
%%     of c2 (what entered there is gone), complete for one of c1;
%%   - kill -9 of q1: its parent drops its subscriptions (its upstream one
%%     goes), and its client resumes on p2 with retro_subscribe from the
%%     second of the last entry it saw, missing nothing.
-module(kraken_cluster_tree_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_tests, [script/3, engine_args/0, free_port/0, wait_until/2,
                               receive_pairs/3, node_name/2, connect/2, owner/3, settled/3,
                               node_atom/2, links_up/3, next_second/0, closed_within/3,
                               sanitizer_reports/1]).

-define(CORES, [c1, c2]).
-define(NODES, [c1, c2, p1, p2, q1, r1, s1]).

tree_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             {inorder,
              [{timeout, 60, {"membership: q1 below p1 and p2, links up to them only",
                              fun() -> membership(Ctx) end}},
               {timeout, 60, {"each (entry, topic) once through two proxies, never back to "
                              "its publisher; a publish on q1 answered once the core routed it",
                              fun() -> exactly_once(Ctx) end}},
               {timeout, 60, {"Redis patterns below parents: each (entry, topic) once on "
                              "q1 and r1, from publishers on every node, never their own "
                              "back", fun() -> redis_patterns(Ctx) end}},
               {timeout, 60, {"Redis shard channels below parents: each SPUBLISH once on "
                              "q1 and r1, from every node; a PUBLISH of the same name "
                              "reaches none", fun() -> redis_shards(Ctx) end}},
               {timeout, 60, {"retro_subscribe on q1 through its parent: every entry since "
                              "the horizon once, in order; NOT_FOUND only when a core lost "
                              "them", fun() -> retro(Ctx) end}},
               {timeout, 90, {"retro_subscribe on q1 across a move of the topics between "
                              "cores (c2 drained, then undrained): every entry since the "
                              "horizon once, never its own, no NOT_FOUND",
                              fun() -> retro_across_move(Ctx) end}},
               {timeout, 60, {"retro_subscribe through three levels, and through a core as a "
                              "parent: every entry since the horizon once, in order",
                              fun() -> retro_deep(Ctx) end}},
               {timeout, 90, {"kill -9 of a parent: q1's clients of its topics disconnected "
                              "within 3 s with a log line, the others undisturbed; it comes "
                              "back while entries flow: nobody disconnected, each (entry, "
                              "topic) once, new topics through it",
                              fun() -> parent_killed(Ctx) end}},
               {timeout, 60, {"a core's engine hangs while q1 waits for its confirmation: "
                              "the waiting publisher gets the error, the subscriber of the "
                              "lost topic is disconnected, q1's links and other clients stay",
                              fun() -> core_hung_while_waiting(Ctx) end}},
               {timeout, 60, {"kill -9 of a core: q1's clients of its topics disconnected "
                              "within 3 s with a log line (the parents tell q1 which topics "
                              "they lost), q1's other clients undisturbed",
                              fun() -> core_killed(Ctx) end}},
               {timeout, 60, {"kill -9 of q1: its parent drops its subscriptions; its client "
                              "resumes on p2 with retro_subscribe and misses nothing",
                              fun() -> child_killed(Ctx) end}}]}
     end}.

setup() ->
    Ctx0 = kraken_cluster_tests:base_ctx("ktr"),
    Ports = maps:from_list([{N, free_port()} || N <- ?NODES]),
    RedisPorts = maps:from_list([{N, free_port()} || N <- ?NODES]),
    Ctx = Ctx0#{ports => Ports, redis_ports => RedisPorts},
    %% A failed start fails the setup, and eunit then runs no cleanup.
    try maps:from_list(start(Ctx, ?NODES)) of
        OsPids -> Ctx#{os_pids => OsPids}
    catch
        Class:Reason:Stack ->
            cleanup(Ctx#{os_pids => #{}}),
            erlang:raise(Class, Reason, Stack)
    end.

cleanup(Ctx = #{tmp := Tmp, os_pids := OsPids}) ->
    Self = self(),
    [spawn(fun() -> Self ! {stopped, script(Ctx, N, ["stop"])} end) || N <- ?NODES],
    [receive {stopped, _} -> ok after 60000 -> ok end || _ <- ?NODES],
    Reports = (catch sanitizer_reports(Tmp)),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null")
     || P <- maps:values(OsPids)],
    _ = os:cmd("rm -rf /tmp/kraken_tree_test_logs && mkdir -p /tmp/kraken_tree_test_logs && cp " ++
                   Tmp ++ "/*.console.log /tmp/kraken_tree_test_logs/ 2>/dev/null"),
    kraken_cluster_tests:base_cleanup(Ctx),
    ok = Reports.

%% Starts nodes at once: `[{Name, OsPid}]'.  Cores join each other, p1 and
%% p2 join c1, q1 names p1 and p2 as its parents (nothing else).
start(Ctx = #{ports := Ports, redis_ports := RedisPorts}, Ns) ->
    Self = self(),
    Opts = fun(c1) -> ["role", "core", "cluster_nodes", list(Ctx, [c2])];
              (c2) -> ["role", "core", "cluster_nodes", list(Ctx, [c1])];
              (q1) -> ["role", "proxy", "parents", list(Ctx, [p1, p2])];
              (r1) -> ["role", "proxy", "parents", list(Ctx, [q1, p2])];
              (s1) -> ["role", "proxy", "parents", list(Ctx, [c1])];
              (_) -> ["role", "proxy", "cluster_nodes", list(Ctx, [c1])]
           end,
    [spawn_link(fun() ->
                        Args = ["start", "-kraken", "tcp_server_port",
                                integer_to_list(maps:get(N, Ports)),
                                "-kraken", "listen_ip", "\"127.0.0.1\"",
                                "-kraken", "redis_port",
                                integer_to_list(maps:get(N, RedisPorts))] ++
                            lists:append([["-kraken", K, V] || [K, V] <- pairs(Opts(N))]) ++
                            engine_args(),
                        Self ! {started, N, script(Ctx, N, Args)}
                end) || N <- Ns],
    [receive
         {started, N, {0, Out}} ->
             {match, [P]} = re:run(Out, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
             {N, list_to_integer(P)};
         {started, N, Other} ->
             error({start_failed, N, Other})
     after 90000 -> error(start_timeout)
     end || N <- Ns].

pairs([K, V | T]) -> [[K, V] | pairs(T)];
pairs([]) -> [].

list(Ctx, Ns) ->
    "[" ++ lists:join(", ", [node_name(Ctx, N) || N <- Ns]) ++ "]".

%% The parent r1 sends a topic to (q1 or p2), then q1's parent, then its core.
route3(Ctx, T) ->
    {owner(Ctx, r1, T), owner(Ctx, q1, T), owner(Ctx, p1, T)}.

%% The first topic Prefix<i> whose owner at each node N of Want is O
%% (Want: [{N, O}]).
topic_where(Ctx, Prefix, Want) ->
    topic_where(Ctx, Prefix, Want, 1).

topic_where(Ctx, Prefix, Want, I) when I =< 400 ->
    T = list_to_binary(Prefix ++ integer_to_list(I)),
    case lists:all(fun({N, O}) -> owner(Ctx, N, T) =:= node_atom(Ctx, O) end, Want) of
        true -> T;
        false -> topic_where(Ctx, Prefix, Want, I + 1)
    end.

%% The first topic Prefix<i> that q1 sends to parent P and that core C owns.
topic_via(Ctx, Prefix, P, C) ->
    topic_where(Ctx, Prefix, [{q1, P}, {p1, C}]).

membership(Ctx) ->
    ok = wait_until(fun() -> links_up(Ctx, q1, [p1, p2]) end, 20000),
    %% r1, below q1 and p2 (three levels through q1); s1, below core c1.
    ok = wait_until(fun() -> links_up(Ctx, r1, [q1, p2]) end, 20000),
    ok = wait_until(fun() -> links_up(Ctx, s1, [c1]) end, 20000),
    ok = wait_until(fun() -> lists:all(fun(N) -> links_up(Ctx, N, ?CORES) end,
                                       [c1, c2, p1, p2]) end, 20000),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], ?CORES) end, 20000),
    %% q1's engine sees the parents as its upstreams.
    {0, Out} = script(Ctx, q1, ["cluster_status"]),
    [?assertMatch({match, _}, re:run(Out, node_name(Ctx, P) ++ "@\\S+\\s+proxy\\s+\\S+\\s+\\S+ ago\\s+up"))
     || P <- [p1, p2]],
    ok.

exactly_once(Ctx) ->
    %% Four topics of each route (parent, core): the hash depends on the
    %% node names, which change from run to run (16 fixed names missed a
    %% route in about 4% of runs).
    %% Two of each route of r1 (q1 or p2), q1 (p1 or p2) and the core.
    Pool = [list_to_binary("tree_" ++ integer_to_list(I)) || I <- lists:seq(1, 200)],
    Routed = [{route3(Ctx, T), T} || T <- Pool],
    Topics = lists:append([lists:sublist([T || {R, T} <- Routed, R =:= W], 2)
                           || W <- [{node_atom(Ctx, R), node_atom(Ctx, P), node_atom(Ctx, C)}
                                    || R <- [q1, p2], P <- [p1, p2], C <- ?CORES]]),
    ?assertEqual(16, length(Topics)),   % every route
    Clients = [{{N, I}, connect(Ctx, N)} || {N, I} <- [{q1, 1}, {q1, 2}, {p1, 1}, {p2, 1},
                                                       {c1, 1}, {c2, 1}, {r1, 1}, {r1, 2},
                                                       {s1, 1}]],
    [ok = kraken_client:subscribe(S, Topics) || {_, S} <- Clients],
    rand:seed(exsss, {3, 2, 1}),
    Published = [{Id, [{pick(Topics), payload(Id, K)} || K <- lists:seq(1, 10)]}
                 || {Id, _} <- Clients],
    [ok = kraken_client:publish(S, [E]) || {Id, S} <- Clients,
                                           E <- proplists:get_value(Id, Published)],
    [begin
         Expected = lists:sort([{P, T} || {Other, Entries} <- Published, Other =/= Id,
                                          {Ts, P} <- Entries, T <- Ts]),
         ?assertEqual({Id, Expected}, {Id, receive_pairs(S, length(Expected), 15000)})
     end || {Id, S} <- Clients],
    timer:sleep(300),
    [?assertEqual({Id, []}, {Id, kraken_client:receive_messages(S)}) || {Id, S} <- Clients],
    %% Acknowledged through two and three hops, and through a core as a
    %% parent: the owner's subscriber, polled right after the STORED of q1,
    %% of r1 (through q1) or of s1, has a large entry published there.
    [T | _] = [T || T <- Topics, route3(Ctx, T) =:= {node_atom(Ctx, q1), node_atom(Ctx, p1),
                                                   node_atom(Ctx, c2)}],
    Sub = connect(Ctx, c2), ok = kraken_client:subscribe(Sub, [T]),
    Big = binary:copy(<<"z">>, 1 bsl 19),
    Pubs = [connect(Ctx, N) || N <- [q1, r1, s1]],
    [begin
         ok = kraken_client:publish(Pub, [{[T], Big}]),
         ?assertEqual({I, [{[T], Big}]}, {I, kraken_client:receive_messages(Sub)})
     end || Pub <- Pubs, I <- lists:seq(1, 2)],
    [kraken_client:disconnect(S) || S <- [Sub | Pubs] ++ [S || {_, S} <- Clients]],
    ok.

%% Redis patterns below parents (docs/cluster.md, "Patterns below
%% parents"): a PSUBSCRIBE on q1 (below p1, p2) and on r1 (below q1, p2)
%% gets each (entry, topic) once, whoever published it: Kraken clients on
%% every node (q1 and r1 among them: their own entries come back through
%% the other parent, and are kept only from the one they went through,
%% which never sends them back), Redis PUBLISHes on q1 and r1 (Debian's
%% redis-cli subscribed on r1 too); a Kraken
%% client of q1 holding half of the topics (pinned to a parent) gets them
%% once too.  Before, the pattern subscribers got only what was published
%% on their own node or on topics it held anyway.
redis_patterns(Ctx) ->
    Pool = [list_to_binary("tpat_" ++ integer_to_list(I)) || I <- lists:seq(1, 200)],
    Routed = [{route3(Ctx, T), T} || T <- Pool],
    Topics = lists:append([lists:sublist([T || {R, T} <- Routed, R =:= W], 1)
                           || W <- [{node_atom(Ctx, R), node_atom(Ctx, P), node_atom(Ctx, C)}
                                    || R <- [q1, p2], P <- [p1, p2], C <- ?CORES]]),
    ?assertEqual(8, length(Topics)),
    Held = [T || {I, T} <- lists:zip(lists:seq(1, 8), Topics), I rem 2 =:= 1],
    K = connect(Ctx, q1), ok = kraken_client:subscribe(K, Held),
    Pat = <<"tpat_*">>,
    Subs = [{N, psubscribe(Ctx, N, Pat)} || N <- [q1, r1]],
    %% And Debian's redis-cli, a client nobody here wrote, on r1.
    Cli = kraken_cluster_tests:redis_cli(Ctx, r1, ["psubscribe", "tpat_*"],
                                         <<"psubscribe\ntpat_*\n1\n">>),
    Kraken = [{N, connect(Ctx, N)} || N <- [q1, r1, p1, p2, c1, c2, s1]],
    Redis = [{N, kraken_cluster_tests:redis_connect(Ctx, N)} || N <- [q1, r1]],
    Expected = kraken_cluster_tests:publish_pattern_entries(Kraken, Redis, Topics),
    [?assertEqual({N, Expected},
                  {N, lists:sort(kraken_cluster_tests:redis_pmessages(R, length(Expected)))})
     || {N, R} <- Subs],
    %% redis-cli printed each as `pmessage', the pattern, the channel, the
    %% message, one per line (after its 3 lines of the psubscribe reply).
    CliOut = kraken_cluster_tests:redis_cli_output(Cli, 4 * length(Expected) + 3),
    ?assertEqual(Expected, lists:sort(kraken_cluster_tests:cli_pmessages(
                                        binary:split(CliOut, <<"\n">>, [global])))),
    HeldExpected = lists:sort([{P, T} || {P, T} <- Expected, lists:member(T, Held)]),
    ?assertEqual(HeldExpected, receive_pairs(K, length(HeldExpected), 10000)),
    %% Nothing more: no entry twice, none of `other'.
    timer:sleep(500),
    [?assertEqual({N, {error, timeout}, <<>>}, {N, gen_tcp:recv(R, 0, 100), get({redis_buf, R})})
     || {N, R} <- Subs],
    ?assertEqual([], kraken_client:receive_messages(K)),
    [gen_tcp:close(R) || {_, R} <- Subs ++ Redis],
    [kraken_client:disconnect(S) || S <- [K | [S || {_, S} <- Kraken]]],
    ok.

%% Redis shard channels below parents (docs/cluster.md, "Shard
%% channels"): SSUBSCRIBE on q1 and r1 to shard channels of every route
%% (they go through the parent they are pinned to, as channels do), and
%% SPUBLISH on q1, r1 (through two levels), p1, p2, both cores and s1
%% (below a core): each subscriber gets each once, nothing more; a PUBLISH
%% to a channel of the same name reaches no shard subscriber.  Before,
%% shard channels below parents were the node's own: each subscriber got
%% only the SPUBLISHes made on its node.
redis_shards(Ctx) ->
    Pool = [list_to_binary("tsh_" ++ integer_to_list(I)) || I <- lists:seq(1, 200)],
    Routed = [{route3(Ctx, T), T} || T <- Pool],
    Topics = lists:append([lists:sublist([T || {R, T} <- Routed, R =:= W], 1)
                           || W <- [{node_atom(Ctx, R), node_atom(Ctx, P), node_atom(Ctx, C)}
                                    || R <- [q1, p2], P <- [p1, p2], C <- ?CORES]]),
    ?assertEqual(8, length(Topics)),
    Subs = [{N, kraken_cluster_tests:redis_connect(Ctx, N)} || N <- [q1, r1]],
    [begin
         ok = gen_tcp:send(R, kraken_cluster_tests:resp([<<"SSUBSCRIBE">> | Topics])),
         [ok = kraken_cluster_tests:redis_expect(
                 R, kraken_cluster_tests:resp_push([<<"ssubscribe">>, T], I))
          || {I, T} <- lists:zip(lists:seq(1, 8), Topics)]
     end || {_, R} <- Subs],
    Pubs = [{N, kraken_cluster_tests:redis_connect(Ctx, N)} || N <- [q1, r1, p1, p2, c1, c2, s1]],
    Published =
        [begin
             Msg = iolist_to_binary([atom_to_list(N), "/", T]),
             ok = gen_tcp:send(R, kraken_cluster_tests:resp([<<"SPUBLISH">>, T, Msg])),
             {Msg, T}
         end || {N, R} <- Pubs, T <- Topics],
    {_, Q} = hd(Pubs),
    [ok = gen_tcp:send(Q, kraken_cluster_tests:resp([<<"PUBLISH">>, T, <<"channel">>]))
     || T <- Topics],
    Expected = lists:sort(Published),
    [?assertEqual({N, Expected},
                  {N, lists:sort(kraken_cluster_tests:redis_smessages(R, length(Expected)))})
     || {N, R} <- Subs],
    timer:sleep(500),
    [?assertEqual({N, {error, timeout}, <<>>}, {N, gen_tcp:recv(R, 0, 100), get({redis_buf, R})})
     || {N, R} <- Subs],
    [gen_tcp:close(R) || {_, R} <- Subs ++ Pubs],
    ok.

retro(Ctx) ->
    %% One topic per (parent, core); q1 holds none of them, nor do p1, p2.
    Fresh = [topic_via(Ctx, "trr_", P, C) || P <- [p1, p2], C <- ?CORES],
    %% And one that p1 holds (a client there) since before the horizon: p1
    %% answers it from its retention, in the same request.
    Held = topic_via(Ctx, "trh_", p1, c2),
    Holder = connect(Ctx, p1), ok = kraken_client:subscribe(Holder, [Held]),
    Topics = [Held | Fresh],
    Pubs = maps:from_list([{N, connect(Ctx, N)} || N <- [c1, p1, p2, q1]]),
    ok = kraken_client:publish(maps:get(c1, Pubs), [{Topics, <<"c before">>}]),
    H = next_second(),
    %% Payloads start with their publisher's letter: c1 c, p1 p, p2 r, q1 q.
    Entries = [{c1, [lists:nth(1, Fresh), Held], <<"c1">>},
               {p1, [lists:nth(2, Fresh)], <<"p1">>},
               {q1, [lists:nth(3, Fresh), Held], <<"q1">>},
               {p2, Topics, <<"r1">>},
               {c1, [lists:nth(4, Fresh), lists:nth(2, Fresh)], <<"c2">>},
               {p1, [Held, lists:nth(1, Fresh), lists:nth(3, Fresh)], <<"p2">>},
               {q1, [lists:nth(4, Fresh)], <<"q2">>},
               {c1, Topics, <<"c3">>}],
    [ok = kraken_client:publish(maps:get(N, Pubs), [{Ts, M}]) || {N, Ts, M} <- Entries],
    timer:sleep(300),
    Expected = fun(Except) -> [{M, T} || {N, Ts, M} <- Entries, N =/= Except, T <- Ts] end,
    A = connect(Ctx, q1),
    ?assertEqual(ok, kraken_client:retro_subscribe(A, H, Topics)),
    expect_in_order(A, Expected(none)),
    %% The child's own publisher does not get its own entries back.
    Q = maps:get(q1, Pubs),
    ?assertEqual(ok, kraken_client:retro_subscribe(Q, H, Topics)),
    expect_in_order(Q, Expected(q1)),
    %% A second client asking for the same past while A holds the topics.
    B = connect(Ctx, q1),
    ?assertEqual(ok, kraken_client:retro_subscribe(B, H, Topics)),
    expect_in_order(B, Expected(none)),
    %% From now on, live, each once.
    ok = kraken_client:publish(maps:get(c1, Pubs), [{Topics, <<"live">>}]),
    Live = lists:sort([{<<"live">>, T} || T <- Topics]),
    [?assertEqual(Live, receive_pairs(S, 5, 5000)) || S <- [A, B, Q]],
    %% NOT_FOUND when the core lost entries after the horizon (10,001
    %% published after it to a topic of c2, which keeps 10,000 per shard).
    G = topic_via(Ctx, "trg_", p2, c2),
    HG = next_second(),
    Owner = connect(Ctx, c2),
    ok = kraken_client:publish(Owner, [{[G], integer_to_binary(I)} || I <- lists:seq(1, 10001)]),
    F = connect(Ctx, q1),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(F, HG, [G])),
    [kraken_client:disconnect(S) || S <- [A, B, F, Owner, Holder | maps:values(Pubs)]],
    ok.

%% A client of q1 retro_subscribes from a horizon before a move of its
%% topics between cores (c2 drained: its topics go to c1), with entries
%% published before and after the move on every node: q1 asks its parent,
%% which asks each core that owned a topic since the horizon for what
%% entered the cluster there (link_entered), adds its own clients' entries,
%% and relays the answer per (entry, topic) (docs/cluster.md, "A proxy
%% below a proxy").  Topics: one of c2 through each parent that nobody
%% holds, one of c2 that a client of p1 holds since before the horizon
%% (answered from p1's retention), one of c1 (not moving) through p1.
%% Each (entry, topic) once, in each publisher's order, nothing of its own
%% to q1's publisher, then live once.  (Before the relay did this, p1
%% answered q1 NOT_FOUND.)  c2 is undrained at the end.
retro_across_move(Ctx) ->
    [M1, M2] = Moving = [topic_via(Ctx, "tmv_", P, c2) || P <- [p1, p2]],
    Held = topic_via(Ctx, "tmh_", p1, c2),
    Staying = topic_via(Ctx, "tms_", p1, c1),
    Holder = connect(Ctx, p1), ok = kraken_client:subscribe(Holder, [Held]),
    Topics = [Held, Staying | Moving],
    Pubs = maps:from_list([{N, connect(Ctx, N)} || N <- ?NODES]),
    Publish = fun(Es) -> [ok = kraken_client:publish(maps:get(N, Pubs), [{Ts, M}])
                          || {N, Ts, M} <- Es] end,
    Publish([{c2, Topics, <<"d before">>}]),
    H = next_second(),
    %% Payloads start with their publisher's letter: c1 c, c2 d, p1 p, p2 r, q1 q.
    Before = [{c1, [M1, Staying], <<"c1">>},
              {c2, [M1, M2, Held], <<"d1">>},
              {p1, [M1, Held, Staying], <<"p1">>},
              {p2, [M2, M1, Held], <<"r1">>},
              {q1, [M1, M2, Held, Staying], <<"q1">>}],
    Publish(Before),
    {0, Out} = script(Ctx, c2, ["drain"]),
    ?assertMatch({match, _}, re:run(Out, "is drained")),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], [c1]) end, 5000),
    C1 = node_atom(Ctx, c1),
    ?assertEqual([C1, C1, C1], [owner(Ctx, p1, T) || T <- [Held | Moving]]),
    _ = next_second(),   % each publisher's entries after the move in a later second
    After = [{c1, [M2, M1, Held], <<"c2">>},
             {c2, [Staying, M1], <<"d2">>},
             {p1, [M2, Held], <<"p2">>},
             {p2, [M1, Staying, Held], <<"r2">>},
             {q1, [M1, Held], <<"q2">>}],
    Publish(After),
    timer:sleep(300),
    Expected = fun(Except) -> [{M, T} || {N, Ts, M} <- Before ++ After, N =/= Except,
                                         T <- Ts] end,
    A = connect(Ctx, q1),
    ?assertEqual(ok, kraken_client:retro_subscribe(A, H, Topics)),
    expect_in_order(A, Expected(none)),
    %% q1's publisher does not get its own entries back.
    Q = maps:get(q1, Pubs),
    ?assertEqual(ok, kraken_client:retro_subscribe(Q, H, Topics)),
    expect_in_order(Q, Expected(q1)),
    ok = kraken_client:publish(maps:get(c2, Pubs), [{Topics, <<"live">>}]),
    Live = lists:sort([{<<"live">>, T} || T <- Topics]),
    [?assertEqual(Live, receive_pairs(S, 4, 5000)) || S <- [A, Q]],
    {0, _} = script(Ctx, c2, ["undrain"]),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], ?CORES) end, 20000),
    [kraken_client:disconnect(S) || S <- [A, Holder | maps:values(Pubs)]],
    ok.

%% retro_subscribe through three levels (r1 asks q1, which asks p1 or p2,
%% which ask the cores) and through a core as a parent (s1 asks c1, which
%% answers its own topics and asks c2 for the others): every entry since the
%% horizon once, in each publisher's order, never the asker's own, then live.
retro_deep(Ctx) ->
    %% r1 -> q1 -> each parent -> each core; r1 -> p2 -> each core.
    Via3 = [topic_where(Ctx, "trd_", [{r1, q1}, {q1, P}, {p1, C}])
            || P <- [p1, p2], C <- ?CORES],
    Via2 = [topic_where(Ctx, "trd_", [{r1, p2}, {p1, C}]) || C <- ?CORES],
    %% And one that q1 holds (a client there) since before the horizon: q1
    %% answers it from its retention, in the same request.
    Held = topic_where(Ctx, "trdh_", [{r1, q1}, {q1, p1}, {p1, c2}]),
    Holder = connect(Ctx, q1), ok = kraken_client:subscribe(Holder, [Held]),
    Topics = [Held | Via3 ++ Via2],
    [T1, T2, T3, T4, T5, T6] = Via3 ++ Via2,
    Pubs = maps:from_list([{N, connect(Ctx, N)} || N <- [c1, c2, p2, q1, r1, s1]]),
    ok = kraken_client:publish(maps:get(c1, Pubs), [{Topics, <<"c before">>}]),
    H = next_second(),
    %% Payloads start with their publisher's letter: c1 c, c2 d, p2 o, q1 q,
    %% r1 r, s1 s.
    Entries = [{r1, [T1, T5, Held], <<"r1">>},
               {c1, [T2, T6], <<"c1">>},
               {s1, [T3, T4, T5], <<"s1">>},
               {q1, [T1, T6, Held], <<"q1">>},
               {c2, Topics, <<"d1">>},
               {p2, [T4, T2, Held], <<"o1">>},
               {r1, Topics, <<"r2">>},
               {s1, [T1, T6, Held], <<"s2">>},
               {c1, Topics, <<"c2">>},
               {q1, [T3, T5], <<"q2">>},
               {r1, [T2, T4], <<"r3">>}],
    [ok = kraken_client:publish(maps:get(N, Pubs), [{Ts, M}]) || {N, Ts, M} <- Entries],
    timer:sleep(300),
    Expected = fun(Except) -> [{M, T} || {N, Ts, M} <- Entries, N =/= Except, T <- Ts] end,
    Askers = [{N, Except, S} || {N, Except} <- [{r1, none}, {r1, r1}, {s1, none}, {s1, s1}],
                                S <- [case Except of
                                          none -> connect(Ctx, N);
                                          _ -> maps:get(N, Pubs)
                                      end]],
    [begin
         ?assertEqual({N, Except, ok}, {N, Except, kraken_client:retro_subscribe(S, H, Topics)}),
         expect_in_order(S, Expected(Except))
     end || {N, Except, S} <- Askers],
    ok = kraken_client:publish(maps:get(c2, Pubs), [{Topics, <<"live">>}]),
    Live = lists:sort([{<<"live">>, T} || T <- Topics]),
    [?assertEqual(Live, receive_pairs(S, length(Topics), 5000)) || {_, _, S} <- Askers],
    [kraken_client:disconnect(S) || S <- lists:usort([Holder | [S || {_, _, S} <- Askers]]
                                                     ++ maps:values(Pubs))],
    ok.

%% The (payload, topic) pairs S receives are exactly Expected, each
%% publisher's (first letter of the payload) in publish order per topic.
expect_in_order(S, Expected) ->
    Got = receive_in_order(S, length(Expected), erlang:monotonic_time(millisecond) + 5000, []),
    ?assertEqual(lists:sort(Expected), lists:sort(Got)),
    By = fun(L, Pre, T) -> [P || {<<F, _/binary>> = P, T1} <- L, F =:= Pre, T1 =:= T] end,
    [?assertEqual({T, By(Expected, Pre, T)}, {T, By(Got, Pre, T)})
     || Pre <- lists:usort([F || {<<F, _/binary>>, _} <- Expected]),
        T <- lists:usort([T || {_, T} <- Expected])],
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(S)).

receive_in_order(S, N, Deadline, Acc) ->
    Msgs = kraken_client:receive_messages(S),
    ?assert(is_list(Msgs)),
    Acc1 = Acc ++ [{P, T} || {Ts, P} <- Msgs, T <- Ts],
    case length(Acc1) >= N orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> Acc1;
        false -> timer:sleep(50), receive_in_order(S, N, Deadline, Acc1)
    end.

parent_killed(Ctx = #{os_pids := OsPids, tmp := Tmp}) ->
    Via1 = topic_via(Ctx, "tk_", p1, c1),
    Via2 = topic_via(Ctx, "tk_", p2, c1),
    %% Topics that q1 sends to p1 (by the hash, both parents live), and to
    %% p2; the first (T1, for the race below) of core c1.
    T1 = topic_where(Ctx, "tkm_", [{q1, p1}, {p2, c1}]),
    Many = [T1 | lists:append([lists:sublist([T || I <- lists:seq(1, 200),
                                                   T <- [list_to_binary("tkm_" ++
                                                                            integer_to_list(I))],
                                                   T =/= T1,
                                                   owner(Ctx, q1, T) =:= node_atom(Ctx, P)], K)
                               || {P, K} <- [{p1, 3}, {p2, 4}]])],
    ?assertEqual(8, length(Many)),
    X = connect(Ctx, q1), ok = kraken_client:subscribe(X, [Via2]),        % stays
    Y = connect(Ctx, q1), ok = kraken_client:subscribe(Y, [Via1]),        % disconnected
    Z = connect(Ctx, q1), ok = kraken_client:subscribe(Z, [Via1, Via2]),  % disconnected
    W = connect(Ctx, p2), ok = kraken_client:subscribe(W, [Via1, Via2]),  % stays
    Pub = connect(Ctx, c1),
    %% A Redis pattern holder on q1 depends on both parents (it is held at
    %% each): disconnected.
    PY = psubscribe(Ctx, q1, <<"tk_*">>),
    ok = kraken_client:publish(Pub, [{[Via1, Via2], <<"before">>}]),
    [?assertMatch([_ | _], receive_pairs(S, 1, 5000)) || S <- [X, Y, W]],
    ?assertEqual(2, length(receive_pairs(Z, 2, 5000))),
    _ = receive_pairs(W, 1, 1000),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -9 -" ++ integer_to_list(maps:get(p1, OsPids))),
    [closed_within(S, T0, 3000) || S <- [Y, Z, PY]],
    logged(Ctx, q1, "holds pattern tk_\\*, which matches topics of core " ++
               node_name(Ctx, p1) ++ "@"),
    Log = filename:join(Tmp, node_name(Ctx, q1) ++ ".console.log"),
    ok = wait_until(fun() ->
                            {ok, Text} = file:read_file(Log),
                            re:run(Text, "holds topic " ++ binary_to_list(Via1) ++
                                       " owned by core " ++ node_name(Ctx, p1) ++ "@",
                                   [{capture, none}]) =:= match
                    end, 3000),
    %% X and W were not disturbed.
    ok = kraken_client:publish(Pub, [{[Via1, Via2], <<"after">>}]),
    ?assertEqual([{<<"after">>, Via2}], receive_pairs(X, 1, 5000)),
    ?assertEqual(lists:sort([{<<"after">>, Via1}, {<<"after">>, Via2}]),
                 receive_pairs(W, 2, 5000)),
    %% p1's topics go through p2 now.
    ok = wait_until(fun() -> links_up(Ctx, q1, [p2]) end, 5000),
    ?assertEqual(node_atom(Ctx, p2), owner(Ctx, q1, Via1)),
    V = connect(Ctx, q1), ok = kraken_client:subscribe(V, [Via1]),
    ok = kraken_client:publish(Pub, [{[Via1], <<"moved">>}]),
    ?assertEqual([{<<"moved">>, Via1}], receive_pairs(V, 1, 5000)),
    kraken_client:disconnect(W),
    %% A pattern holder on q1 while p1 is away: when p1 is back, the
    %% topics nobody holds on q1 go by a hash over both parents again, and
    %% an entry in flight could come through either or neither: it is
    %% disconnected (docs/cluster.md, "Patterns below parents").
    PZ = psubscribe(Ctx, q1, <<"tk_*">>),
    ok = kraken_client:publish(Pub, [{[Via1, Via2], <<"pattern">>}]),
    ?assertEqual(lists:sort([{<<"pattern">>, Via1}, {<<"pattern">>, Via2}]),
                 lists:sort(kraken_cluster_tests:redis_pmessages(PZ, 2))),
    ?assertEqual([{<<"pattern">>, Via2}], receive_pairs(X, 1, 5000)),
    ?assertEqual([{<<"pattern">>, Via1}], receive_pairs(V, 1, 5000)),
    %% Two clients of q1 hold the Many topics (all through p2 now), while
    %% a client of c1, one of p2 and one of q1 publish to them without a
    %% pause.  p1 restarts with the same name: sticky parents, nothing
    %% moves (docs/cluster.md, "Sticky parents"): nobody is disconnected
    %% (before, the holders of the topics that hash to p1 were: "which took
    %% it over from another parent"), and each holder gets every (entry,
    %% topic) once across the return (q1's own publisher's entries too: they
    %% go to p2 with the topics, never back through p1).
    Collectors = [collector(Ctx, q1, Many) || _ <- [1, 2]],
    Pubs = [publisher(Ctx, N, Many, Tag) || {N, Tag} <- [{c1, "c"}, {p2, "r"}, {q1, "q"}]],
    timer:sleep(300),
    [{p1, _}] = start(Ctx, [p1]),
    ok = wait_until(fun() -> links_up(Ctx, q1, [p1, p2]) end, 20000),
    %% r1, below q1 and p2 (three levels through q1); s1, below core c1.
    ok = wait_until(fun() -> links_up(Ctx, r1, [q1, p2]) end, 20000),
    ok = wait_until(fun() -> links_up(Ctx, s1, [c1]) end, 20000),
    ok = wait_until(fun() -> links_up(Ctx, p1, ?CORES) end, 10000),
    closed_within(PZ, erlang:monotonic_time(millisecond), 3000),
    logged(Ctx, q1, "holds pattern tk_\\*, whose topics may come through another parent from "
           "now on \\(the set of parents changed\\)"),
    %% A pattern holder of the Many topics, subscribed now that p1 is back:
    %% those of them that hash to p1 are pinned to p2 (held since p1 was
    %% away); when they are released below, they go through p1 from then
    %% on, and entries in flight could come through either: it goes too.
    PW = psubscribe(Ctx, q1, <<"tkm_*">>),
    timer:sleep(500),
    Results = [stop(P, published) || P <- Pubs],
    timer:sleep(500),
    %% The unsubscribe race: the collectors leave, q1 unsubscribes the Many
    %% topics at p2, and p2 does not read it at once: it holds q1's link
    %% while a publish of q1 waits for core c2, whose engine is stopped
    %% (under load, a full output does the same).  Until p2 has processed
    %% the unsubscribe it still routes their entries to q1, so they stay
    %% pinned to p2, even those that hash to p1 (ToP1): a new holder N of
    %% one of them (T1, of c1) subscribes at p2 again, and an entry c1
    %% publishes meanwhile reaches N once.  (Unpinned at once, N subscribed
    %% at p1 and got it twice: from p1, and from p2 once released.)
    ToP1 = lists:sublist(Many, 4),
    Held = topic_via(Ctx, "tkh_", p2, c2),
    Sent = fun() -> hd([S || {Nm, _, _, _, _, _, S, _, _} <- kraken_cluster_tests:rpc(
                                                           Ctx, q1, kraken_engine, call,
                                                           [cluster_status]),
                             Nm =:= atom_to_binary(node_atom(Ctx, p2))]) end,
    Sent0 = Sent(),
    P2 = node_atom(Ctx, p2),
    C2Engine = integer_to_list(kraken_cluster_tests:rpc(Ctx, c2, kraken_engine, os_pid, [])),
    [N, QP] = [connect(Ctx, q1) || _ <- [1, 2]],
    Self = self(),
    _ = os:cmd("kill -STOP " ++ C2Engine),
    Got = try
              _ = spawn_link(fun() -> Self ! {qp, kraken_client:publish(QP, [{[Held], <<"h">>}])}
                             end),
              %% Forwarded by q1 to p2 (which then holds q1's link, reading
              %% nothing behind it: the unsubscribes below come after it).
              ok = wait_until(fun() -> Sent() > Sent0 end, 2000),
              G = [stop(C, collected) || C <- Collectors],
              timer:sleep(50),
              ?assertEqual(P2, owner(Ctx, q1, T1)),
              _ = spawn_link(fun() -> Self ! {n, kraken_client:subscribe(N, [T1])} end),
              timer:sleep(100),
              ok = kraken_client:publish(Pub, [{[T1], <<"during">>}]),
              timer:sleep(150),
              G
          after
              os:cmd("kill -CONT " ++ C2Engine)
          end,
    [receive {Tag, R} -> ?assertEqual({Tag, ok}, {Tag, R}) after 5000 -> error({Tag, timeout}) end
     || Tag <- [qp, n]],
    ?assertEqual(P2, owner(Ctx, q1, T1)),
    ok = kraken_client:publish(Pub, [{[T1], <<"after">>}]),
    NPairs = receive_pairs(N, 2, 3000),
    timer:sleep(300),
    NAll = lists:sort(NPairs ++ [{P, T} || {Ts, P} <- kraken_client:receive_messages(N),
                                          T <- Ts]),
    ?assertEqual([{<<"after">>, T1}, {<<"during">>, T1}], NAll),
    [kraken_client:disconnect(S) || S <- [N, QP]],
    %% (On the engine before: both collectors disconnected, and q1's
    %% publisher refused while q1's link to p1 was connecting.)
    ?assertEqual([], [G || G <- Got, not is_list(G)]),
    ?assertEqual([], [R || R <- Results, not is_list(R)]),   % every publish STORED
    Published = lists:append(Results),
    ?assert(length(Published) > 30),
    Expected = lists:sort([{P, T} || {Ts, P} <- Published, T <- Ts]),
    [?assertEqual({I, length(Expected), Expected}, {I, length(G), G})
     || {I, G} <- lists:zip([1, 2], Got)],
    {ok, Text} = file:read_file(Log),
    ?assertEqual(nomatch, re:run(Text, "took it over from another parent")),
    %% V and X were not disturbed either: their topics stay with p2.
    ?assertEqual(node_atom(Ctx, p2), owner(Ctx, q1, Via1)),
    ok = kraken_client:publish(Pub, [{[Via1, Via2], <<"back">>}]),
    ?assertEqual([{<<"back">>, Via2}], receive_pairs(X, 1, 5000)),
    ?assertEqual([{<<"back">>, Via1}], receive_pairs(V, 1, 5000)),
    %% A topic subscribed now that hashes to p1 does go through p1: q1's
    %% status counts it there (Via1 and Via2 at p2).
    Fresh = topic_where(Ctx, "tkn_", [{q1, p1}]),
    U = connect(Ctx, q1), ok = kraken_client:subscribe(U, [Fresh]),
    ?assertEqual([{node_atom(Ctx, p1), 1}, {node_atom(Ctx, p2), 2}], upstream_topics(Ctx, q1)),
    ok = kraken_client:publish(Pub, [{[Fresh], <<"through p1">>}]),
    ?assertEqual([{<<"through p1">>, Fresh}], receive_pairs(U, 1, 5000)),
    %% The load evens out as topics are released: once their holders left
    %% (and p2 processed the unsubscribes), the Many topics go by the hash
    %% again, those of p1 to p1.
    ok = wait_until(fun() -> [owner(Ctx, q1, T) || T <- ToP1] =:=
                                 [node_atom(Ctx, p1) || _ <- ToP1] end, 5000),
    closed_within(PW, erlang:monotonic_time(millisecond), 3000),
    logged(Ctx, q1, "holds pattern tkm_\\*, whose topic tkm_\\S+ goes through another parent "
           "from now on"),
    [kraken_client:disconnect(S) || S <- [X, V, U, Pub]],
    ok.

%% Per live upstream of Name's engine: how many topics it holds there
%% (cluster_status' UPSTREAM_TOPICS), sorted by name.
%% A Redis client of node N holding pattern Pat.
psubscribe(Ctx, N, Pat) ->
    R = kraken_cluster_tests:redis_connect(Ctx, N),
    ok = gen_tcp:send(R, kraken_cluster_tests:resp([<<"PSUBSCRIBE">>, Pat])),
    ok = kraken_cluster_tests:redis_expect(
           R, kraken_cluster_tests:resp_push([<<"psubscribe">>, Pat], 1)),
    R.

%% A Redis client of node N holding shard channel T.
ssubscribe(Ctx, N, T) ->
    R = kraken_cluster_tests:redis_connect(Ctx, N),
    ok = gen_tcp:send(R, kraken_cluster_tests:resp([<<"SSUBSCRIBE">>, T])),
    ok = kraken_cluster_tests:redis_expect(
           R, kraken_cluster_tests:resp_push([<<"ssubscribe">>, T], 1)),
    R.

%% Node N's log has a line matching Re, within 3 s.
logged(Ctx = #{tmp := Tmp}, N, Re) ->
    Log = filename:join(Tmp, node_name(Ctx, N) ++ ".console.log"),
    ok = wait_until(fun() ->
                            {ok, Text} = file:read_file(Log),
                            re:run(Text, Re, [{capture, none}]) =:= match
                    end, 3000).

upstream_topics(Ctx, Name) ->
    lists:sort([{binary_to_atom(N), Topics}
                || {N, _, _, _, Topics, _, _, _, _} <- kraken_cluster_tests:rpc(
                                                         Ctx, Name, kraken_engine, call,
                                                         [cluster_status])]).

%% A client of Node holding Topics, in a process of its own that polls
%% every 20 ms until stop/2: then it gives every (payload, topic) pair it
%% got, sorted; an error (its connection closed) ends it at once.
collector(Ctx, Node, Topics) ->
    Self = self(),
    Pid = spawn_link(fun() ->
                             S = connect(Ctx, Node),
                             ok = kraken_client:subscribe(S, Topics),
                             Self ! {ready, self()},
                             collect(S, Self, [])
                     end),
    receive {ready, Pid} -> Pid after 10000 -> error(collector_not_ready) end.

collect(S, Parent, Acc) ->
    case kraken_client:receive_messages(S) of
        Msgs when is_list(Msgs) ->
            Acc1 = [{P, T} || {Ts, P} <- Msgs, T <- Ts] ++ Acc,
            receive
                {stop, Parent} ->
                    kraken_client:disconnect(S),
                    Parent ! {collected, self(), lists:sort(Acc1)}
            after 20 -> collect(S, Parent, Acc1)
            end;
        Error ->
            receive {stop, Parent} -> Parent ! {collected, self(), {disconnected, Error}} end
    end.

%% A client of Node publishing one entry on 1-3 of Topics, acknowledged,
%% every 10 ms until stop/2: then it gives the entries [{Topics, Payload}].
publisher(Ctx, Node, Topics, Tag) ->
    Self = self(),
    spawn_link(fun() ->
                       S = connect(Ctx, Node),
                       rand:seed(exsss, {erlang:phash2(Tag), 7, 11}),
                       publish_loop(S, Self, Tag, Topics, 1, [])
               end).

publish_loop(S, Parent, Tag, Topics, I, Acc) ->
    receive
        {stop, Parent} ->
            kraken_client:disconnect(S),
            Parent ! {published, self(), lists:reverse(Acc)}
    after 10 ->
            E = {pick(Topics), iolist_to_binary([Tag, integer_to_list(I)])},
            case kraken_client:publish(S, [E]) of
                ok -> publish_loop(S, Parent, Tag, Topics, I + 1, [E | Acc]);
                Error -> receive {stop, Parent} -> Parent ! {published, self(), {Tag, Error}} end
            end
    end.

stop(Pid, Tag) ->
    Pid ! {stop, self()},
    receive {Tag, Pid, Result} -> Result after 10000 -> error({no_answer, Tag}) end.

%% c2's engine stopped while q1 waits for it: a publish on q1 of a topic of
%% c2 through p1, and a subscribe on q1 to a fresh topic of c2 through p2,
%% are held at p1 and p2 until they find c2 gone (its link unanswered, 1.5
%% to 2.5 s).  Then p1 answers q1's held publish with the error (q1 gives it
%% to its publisher, then closes it) and the one sent behind it, for c1
%% only, STORED (its publisher goes on), p2 names the topic lost (q1
%% disconnects its subscriber), and both keep q1's link: X, which holds
%% topics of c1 through p1 and p2, is not disturbed and gets what c1
%% published while the links were held.  (Before, p1 and p2 closed q1's
%% links as any waiting client, or q1 closed them itself when its pings
%% went unanswered behind the held requests, and X was disconnected.)
%% c2 then resumes.
core_hung_while_waiting(Ctx = #{tmp := Tmp, ports := Ports}) ->
    ok = wait_until(fun() -> links_up(Ctx, p1, ?CORES) andalso links_up(Ctx, p2, ?CORES)
                                 andalso links_up(Ctx, q1, [p1, p2]) end, 10000),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], ?CORES) end, 10000),
    [K1, L1, F, K2] = [topic_via(Ctx, "th_", P, C) || {P, C} <- [{p1, c1}, {p1, c2},
                                                                  {p2, c2}, {p2, c1}]],
    X = connect(Ctx, q1), ok = kraken_client:subscribe(X, [K1, K2]),   % stays
    Y = connect(Ctx, q1), ok = kraken_client:subscribe(Y, [L1]),       % disconnected
    Pub = connect(Ctx, c1),
    ok = kraken_client:publish(Pub, [{[K1, K2, L1], <<"before">>}]),
    ?assertEqual(2, length(receive_pairs(X, 2, 5000))),
    ?assertEqual(1, length(receive_pairs(Y, 1, 5000))),
    {ok, KP} = gen_tcp:connect({127, 0, 0, 1}, maps:get(q1, Ports), [binary, {active, false}]),
    {ok, KP2} = gen_tcp:connect({127, 0, 0, 1}, maps:get(q1, Ports), [binary, {active, false}]),
    Publish = fun(S, Ts, P) ->
                      {ok, B} = kraken_client:serialize_entries([{Ts, P}]),
                      ok = gen_tcp:send(S, [<<"set publish 0 0 ">>,
                                            integer_to_binary(iolist_size(B)), <<"\r\n">>, B,
                                            <<"\r\n">>])
              end,
    Q = connect(Ctx, q1),
    %% A child of p1 speaking the link protocol itself, so that two of its
    %% publish batches, one for c2 and one for c1, arrive in one write.
    {ok, Raw} = gen_tcp:connect({127, 0, 0, 1}, maps:get(p1, Ports), [binary, {active, false}]),
    ok = gen_tcp:send(Raw, <<"set child 0 0 6 noreply\r\nrawkid\r\n">>),
    Batch = fun(Ts, P) ->
                    {ok, B} = kraken_client:serialize_entries([{Ts, P}]),
                    [<<"set publish 0 0 ">>, integer_to_binary(iolist_size(B)), <<"\r\n">>, B,
                     <<"\r\n">>]
            end,
    EngineOsPid = integer_to_list(kraken_cluster_tests:rpc(Ctx, c2, kraken_engine, os_pid, [])),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -STOP " ++ EngineOsPid),
    try
        Publish(KP, [L1], <<"maybe">>),
        ok = gen_tcp:send(Raw, [Batch([L1], <<"raw maybe">>), Batch([K1], <<"raw c1">>)]),
        Self = self(),
        _ = spawn_link(fun() -> Self ! {q, kraken_client:subscribe(Q, [F])} end),
        %% Behind KP's publish, one for c1 only, in another batch of q1's:
        %% p1 reads nothing more from q1's link while it holds a reply, so
        %% this one waits there, and is forwarded once KP's is answered:
        %% STORED, not refused with it.
        timer:sleep(30),
        Publish(KP2, [K1], <<"kp2">>),
        %% While they wait, c1 publishes to X's topics: q1's links are held
        %% at p1 and p2 (nothing is written to them), and get it afterwards.
        timer:sleep(270),
        ok = kraken_client:publish(Pub, [{[K1, K2], <<"during">>}]),
        ?assertEqual({error, timeout}, gen_tcp:recv(KP, 0, 200)),   % still held
        ?assertEqual({error, timeout}, gen_tcp:recv(KP2, 0, 0)),
        ?assertEqual(<<"SERVER_ERROR cluster core unavailable\r\n">>,
                     kraken_cluster_tests:bytes_until_closed(KP, T0, 3500)),
        %% KP2's publish, which c1 confirmed, is STORED, and KP2 goes on.
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(KP2, 0, 3500)),
        Publish(KP2, [K1], <<"kp2 again">>),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(KP2, 0, 3500)),
        %% The raw child's two batches, read together: only the one that
        %% waited for c2 is refused; the one for c1 is STORED (before, both
        %% were refused), and its link answers on.
        RawWant = <<"SERVER_ERROR cluster core unavailable\r\nSTORED\r\n">>,
        ?assertEqual({ok, RawWant}, gen_tcp:recv(Raw, byte_size(RawWant), 3500)),
        ok = gen_tcp:send(Raw, Batch([K1], <<"raw again">>)),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(Raw, 0, 3500)),
        receive
            {q, R} -> ?assertEqual({error, {server_error, <<"cluster core unavailable">>}}, R)
        after 3500 -> error(subscribe_not_answered)
        end,
        closed_within(Q, T0, 3500),
        closed_within(Y, T0, 3500),
        %% X was not disturbed: what c1 published while q1's links were
        %% held, KP2's entries (local to q1), then what c1 publishes now,
        %% each once.
        ?assertEqual(lists:sort([{<<"during">>, K1}, {<<"during">>, K2}, {<<"kp2">>, K1},
                                 {<<"kp2 again">>, K1}, {<<"raw c1">>, K1},
                                 {<<"raw again">>, K1}]),
                     receive_pairs(X, 6, 5000)),
        ok = kraken_client:publish(Pub, [{[K1, K2], <<"after">>}]),
        ?assertEqual(lists:sort([{<<"after">>, K1}, {<<"after">>, K2}]),
                     receive_pairs(X, 2, 5000)),
        Log = filename:join(Tmp, node_name(Ctx, q1) ++ ".console.log"),
        ok = wait_until(fun() ->
                                {ok, Text} = file:read_file(Log),
                                lists:all(fun(Re) -> re:run(Text, Re, [{capture, none}]) =:= match
                                          end,
                                          ["its publish was refused by " ++ node_name(Ctx, p1),
                                           "holds topic " ++ binary_to_list(F) ++ " owned by core "
                                           ++ node_name(Ctx, p2) ++ "@\\S+, which lost it upstream"])
                        end, 3000)
    after
        _ = os:cmd("kill -CONT " ++ EngineOsPid)
    end,
    %% c2 is back before the next test (its heartbeats stopped for less than
    %% the deadline: it stayed live, its links are reopened).
    ok = wait_until(fun() -> links_up(Ctx, p1, ?CORES) andalso links_up(Ctx, p2, ?CORES) end,
                    15000),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], ?CORES) end, 15000),
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(X)),
    gen_tcp:close(KP2),
    gen_tcp:close(Raw),
    [kraken_client:disconnect(S) || S <- [X, Pub]],
    ok.

%% c2 killed: p1 and p2 lose its topics, and tell q1 which (VALUE lost on
%% its links): only q1's clients of c2's topics are disconnected.  (Before,
%% p1 and p2 closed q1's links as holders of c2's topics, which disconnected
%% every client of q1 holding any topic through them.)
core_killed(Ctx = #{os_pids := OsPids, tmp := Tmp}) ->
    ok = wait_until(fun() -> links_up(Ctx, p1, ?CORES) andalso links_up(Ctx, p2, ?CORES)
                                 andalso links_up(Ctx, q1, [p1, p2]) end, 10000),
    [K1, L1, L2, K2] = [topic_via(Ctx, "tc_", P, C) || {P, C} <- [{p1, c1}, {p1, c2},
                                                                    {p2, c2}, {p2, c1}]],
    X = connect(Ctx, q1), ok = kraken_client:subscribe(X, [K1, K2]),   % stays
    Y = connect(Ctx, q1), ok = kraken_client:subscribe(Y, [L1]),       % disconnected
    Z = connect(Ctx, q1), ok = kraken_client:subscribe(Z, [K2, L2]),   % disconnected
    %% Three levels: r1 -> q1 -> p1 -> c2 (VALUE lost passed down twice),
    %% r1 -> p2 -> c2; and s1 below core c1, which loses c2's topics.
    [RL3, RL2, RK3, RK2] = [topic_where(Ctx, "tc3_", W)
                            || W <- [[{r1, q1}, {q1, p1}, {p1, c2}], [{r1, p2}, {p1, c2}],
                                     [{r1, q1}, {p1, c1}], [{r1, p2}, {p1, c1}]]],
    [SL, SK] = [topic_where(Ctx, "tcs_", [{p1, C}]) || C <- [c2, c1]],
    RX = connect(Ctx, r1), ok = kraken_client:subscribe(RX, [RK3, RK2]),   % stays
    RY = connect(Ctx, r1), ok = kraken_client:subscribe(RY, [RL3]),        % disconnected
    RZ = connect(Ctx, r1), ok = kraken_client:subscribe(RZ, [RK3, RL2]),   % disconnected
    SX = connect(Ctx, s1), ok = kraken_client:subscribe(SX, [SK]),         % stays
    SY = connect(Ctx, s1), ok = kraken_client:subscribe(SY, [SL, SK]),     % disconnected
    %% Redis pattern holders on q1 and r1 (held at every parent, each of
    %% which holds them at every core): each parent names them lost (`VALUE
    %% plost'), and q1 passes it down to r1: both are disconnected.
    PQ = psubscribe(Ctx, q1, <<"tcpat_*">>),
    PR = psubscribe(Ctx, r1, <<"tcpat_*">>),
    %% Shard channels of the same names on q1: the one of c2 is named lost
    %% (`VALUE slost'), its holder disconnected; the one of c1 stays.
    SSL = ssubscribe(Ctx, q1, L1),
    SSK = ssubscribe(Ctx, q1, K1),
    Pub = connect(Ctx, c1),
    H = next_second(),
    ok = kraken_client:publish(Pub, [{[K1, K2, L1, L2, RL3, RL2, RK3, RK2, SL, SK],
                                      <<"before">>}]),
    ?assertEqual(2, length(receive_pairs(X, 2, 5000))),
    ?assertEqual(1, length(receive_pairs(Y, 1, 5000))),
    ?assertEqual(2, length(receive_pairs(Z, 2, 5000))),
    [?assertEqual({I, N}, {I, length(receive_pairs(S, N, 5000))})
     || {I, S, N} <- [{rx, RX, 2}, {ry, RY, 1}, {rz, RZ, 2}, {sx, SX, 1}, {sy, SY, 2}]],
    %% For child_killed: a topic c1 owned before c2 was killed too (its
    %% retro_subscribe's horizon may reach back before the kill; a topic of
    %% c2 then had an owner since that is gone: NOT_FOUND).
    persistent_term:put({?MODULE, child_topic}, topic_via(Ctx, "tq_", p1, c1)),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -9 -" ++ integer_to_list(maps:get(c2, OsPids))),
    [closed_within(S, T0, 3000) || S <- [Y, Z, RY, RZ, SY, PQ, PR, SSL]],
    Logged = fun(N, T, Parent) ->
                     Log = filename:join(Tmp, node_name(Ctx, N) ++ ".console.log"),
                     ok = wait_until(
                            fun() ->
                                    {ok, Text} = file:read_file(Log),
                                    re:run(Text, "holds topic " ++ binary_to_list(T) ++
                                               " owned by core " ++ node_name(Ctx, Parent) ++
                                               "@\\S+, which lost it upstream",
                                           [{capture, none}]) =:= match
                            end, 3000)
             end,
    Logged(q1, L1, p1),
    Logged(r1, RL3, q1),
    Logged(r1, RL2, p2),
    Logged(s1, SL, c1),
    logged(Ctx, q1, "holds pattern tcpat_\\*, which parent " ++ node_name(Ctx, p1) ++ "@\\S+ "
           "lost upstream|holds pattern tcpat_\\*, which parent " ++ node_name(Ctx, p2) ++
           "@\\S+ lost upstream"),
    logged(Ctx, r1, "holds pattern tcpat_\\*, which parent \\S+ lost upstream"),
    [logged(Ctx, P, "a proxy below this node, held 1 pattern\\(s\\) \\(tcpat_\\*\\) matching "
            "topics of core " ++ node_name(Ctx, c2) ++ "@") || P <- [p1, p2]],
    %% X, RX and SX were not disturbed.
    ok = kraken_client:publish(Pub, [{[K1, K2, RK3, RK2, SK], <<"after">>}]),
    ?assertEqual(lists:sort([{<<"after">>, K1}, {<<"after">>, K2}]), receive_pairs(X, 2, 5000)),
    ?assertEqual(lists:sort([{<<"after">>, RK3}, {<<"after">>, RK2}]),
                 receive_pairs(RX, 2, 5000)),
    ?assertEqual([{<<"after">>, SK}], receive_pairs(SX, 1, 5000)),
    %% c2's topics work again, through c1.
    ok = wait_until(fun() -> links_up(Ctx, p1, [c1]) andalso links_up(Ctx, p2, [c1]) end, 5000),
    %% Once the view no longer has it (until the others' heartbeats stop
    %% listing it, a node may refuse its topics: docs/cluster.md, "Partitions").
    ok = wait_until(fun() -> settled(Ctx, [c1, p1, p2], [c1]) end, 5000),
    V = connect(Ctx, q1), ok = kraken_client:subscribe(V, [L1, L2]),
    ok = kraken_client:publish(Pub, [{[L1, L2], <<"moved">>}]),
    ?assertEqual(lists:sort([{<<"moved">>, L1}, {<<"moved">>, L2}]), receive_pairs(V, 2, 5000)),
    %% The shard holder of c1's channel was not disturbed.
    SP = kraken_cluster_tests:redis_connect(Ctx, c1),
    ok = gen_tcp:send(SP, kraken_cluster_tests:resp([<<"SPUBLISH">>, K1, <<"shard">>])),
    ?assertEqual([{<<"shard">>, K1}], kraken_cluster_tests:redis_smessages(SSK, 1)),
    [gen_tcp:close(Sock) || Sock <- [SP, SSK]],
    %% A pattern subscribed on q1 after the failure gets the moved topics.
    PN = psubscribe(Ctx, q1, <<"tc_*">>),
    ok = kraken_client:publish(Pub, [{[L1, L2], <<"pattern">>}]),
    ?assertEqual(lists:sort([{<<"pattern">>, L1}, {<<"pattern">>, L2}]),
                 lists:sort(kraken_cluster_tests:redis_pmessages(PN, 2))),
    gen_tcp:close(PN),
    %% Retroactive subscriptions on q1 from before the failure: L1's entries
    %% of then entered the cluster at c2, which is gone: NOT_FOUND (the
    %% client reloads); K1's (c1 all along) are all there.
    F = connect(Ctx, q1),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(F, H, [L1])),
    G = connect(Ctx, q1),
    ?assertEqual(ok, kraken_client:retro_subscribe(G, H, [K1])),
    ?assertEqual([{<<"after">>, K1}, {<<"before">>, K1}], receive_pairs(G, 2, 5000)),
    timer:sleep(200),
    [?assertEqual([], kraken_client:receive_messages(S)) || S <- [X, RX, SX]],
    [kraken_client:disconnect(S) || S <- [X, V, F, G, Pub, RX, SX]],
    ok.

%% q1 killed (VM and engine): its client C resumes on p2 with
%% retro_subscribe from the second of the last entry it saw (horizon: that
%% second - 1) and misses nothing (that entry comes again: the only
%% repeat); p1's inbound link from q1 closes, and so its subscription of
%% the topic, held for q1 only, goes upstream too.
child_killed(Ctx = #{os_pids := OsPids, tmp := Tmp}) ->
    T = persistent_term:get({?MODULE, child_topic}),
    %% r1's topics through q1, the middle node, and through p2.
    [RQ, RP] = [topic_where(Ctx, "tqr_", [{r1, P}]) || P <- [q1, p2]],
    timer:sleep(300),   % the unsubscribes of the last test's clients are through
    Before = kraken_cluster_tests:upstream_topics(Ctx, p1),
    C = connect(Ctx, q1), ok = kraken_client:subscribe(C, [T]),
    ?assertEqual(Before + 1, kraken_cluster_tests:upstream_topics(Ctx, p1)),
    RX = connect(Ctx, r1), ok = kraken_client:subscribe(RX, [RP]),        % stays
    RY = connect(Ctx, r1), ok = kraken_client:subscribe(RY, [RQ, RP]),    % disconnected
    Pub = connect(Ctx, c1),
    Second = erlang:system_time(second),   % the publisher's clock, before it publishes
    ok = kraken_client:publish(Pub, [{[T], <<"a1">>}]),
    ?assertEqual([{<<"a1">>, T}], receive_pairs(C, 1, 5000)),
    ok = kraken_client:publish(Pub, [{[RQ, RP], <<"r before">>}]),
    ?assertEqual([{<<"r before">>, RP}], receive_pairs(RX, 1, 5000)),
    ?assertEqual(2, length(receive_pairs(RY, 2, 5000))),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -9 -" ++ integer_to_list(maps:get(q1, OsPids))),
    closed_within(C, T0, 3000),
    %% r1's client of a topic through q1 is disconnected, saying why; the
    %% one of p2's topics is not disturbed.
    closed_within(RY, T0, 3000),
    Log = filename:join(Tmp, node_name(Ctx, r1) ++ ".console.log"),
    ok = wait_until(fun() ->
                            {ok, Text} = file:read_file(Log),
                            re:run(Text, "holds topic " ++ binary_to_list(RQ) ++
                                       " owned by core " ++ node_name(Ctx, q1) ++ "@",
                                   [{capture, none}]) =:= match
                    end, 3000),
    ok = kraken_client:publish(Pub, [{[RQ, RP], <<"r after">>}]),
    ?assertEqual([{<<"r after">>, RP}], receive_pairs(RX, 1, 5000)),
    ok = wait_until(fun() -> kraken_cluster_tests:upstream_topics(Ctx, p1) =:= Before end, 3000),
    ok = kraken_client:publish(Pub, [{[T], <<"a2">>}]),
    ok = kraken_client:publish(Pub, [{[T], <<"a3">>}]),
    R = connect(Ctx, p2),
    ?assertEqual(ok, kraken_client:retro_subscribe(R, Second - 1, [T])),
    expect_in_order(R, [{<<"a1">>, T}, {<<"a2">>, T}, {<<"a3">>, T}]),
    ok = kraken_client:publish(Pub, [{[T], <<"a4">>}]),
    ?assertEqual([{<<"a4">>, T}], receive_pairs(R, 1, 5000)),
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(RX)),
    [kraken_client:disconnect(S) || S <- [R, Pub, RX]],
    ok.

pick(Topics) ->
    lists:usort([lists:nth(rand:uniform(length(Topics)), Topics)
                 || _ <- lists:seq(1, rand:uniform(3))]).

payload({Node, I}, K) ->
    iolist_to_binary(io_lib:format("~s/~b/~b", [Node, I, K])).
