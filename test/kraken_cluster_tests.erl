%% @doc The cluster (docs/cluster.md) on real nodes started by bin/kraken on
%% loopback: 3 cores and 2 proxies, each with its own node name and a free
%% port, joined through `cluster_nodes'.
%%
%%   - membership: every node sees the 5 members and the 3 live cores, and
%%     every engine has its links up (`bin/kraken cluster_status');
%%   - exactly once: clients on every node (cores and proxies) subscribe to
%%     the same topics and publish entries spanning several cores; each
%%     client gets each (entry, topic) pair exactly once, except its own
%%     entries, which it never gets;
%%   - retroactive subscription on a node that does not own the topics
%%     (plan item 3): from its own retention, or from the owner (topics
%%     nobody there held, entries in flight), each (entry, topic) since the
%%     horizon exactly once, in order; NOT_FOUND only when the owner lost
%%     entries;
%%   - acknowledged subscribes: as soon as a client on a node that does not
%%     own a fresh topic has its `STORED' (or Redis's subscribe
%%     confirmation), an entry published on the owner reaches it (the
%%     upstream subscription was confirmed by the owner before the reply);
%%   - acknowledged publishes: a publish on a node that does not own its
%%     topic (Kraken, pipelined Kraken, Redis PUBLISH) is answered only once
%%     the owner has routed it: a subscriber polling the owner right after
%%     the reply has the entry;
%%   - a core killed with kill -9: within 3 s the clients that held one of
%%     its topics, on a proxy and on another core, are disconnected with a
%%     log line saying why; the others are not disturbed; its topics move to
%%     the survivors;
%%   - a core hung (SIGSTOP of its node and engine): the same within 3 s
%%     (heartbeats, not TCP, find it); after SIGCONT it is live again and its
%%     topics go back to it.  In the moment after SIGCONT, before it heard
%%     the others, its own client's publish to a topic it owned is refused
%%     (`SERVER_ERROR cluster core unavailable'), or else reaches the
%%     topic's new owner's subscribers; its own client holding that topic,
%%     which missed what was published at the new owner meanwhile, is
%%     disconnected (before, the publish got STORED and reached nobody
%%     else, and the holder stayed, silently missing an entry);
%%   - a core's engine hung alone (SIGSTOP of the engine, the VM runs): the
%%     links' pings find it within 3 s, and its node stops heartbeating, so
%%     its topics move; back after SIGCONT.  A client that subscribed to one
%%     of its topics just after it hung, whose subscribe waits for the
%%     core's confirmation, gets `SERVER_ERROR cluster core unavailable'
%%     instead of STORED, then the close; so does a publish forwarded to it
%%     just after it hung (Redis: `-ERR cluster core unavailable: not
%%     published'), and a noreply one is named in a warning;
%%   - a proxy killed with kill -9: its clients resume on the other proxy
%%     with retro_subscribe from the second of the last message they saw,
%%     and miss nothing.
%%
%% This node becomes a distributed node to make rpc calls to them.
-module(kraken_cluster_tests).

-include_lib("eunit/include/eunit.hrl").

%% Helpers for the other cluster test modules (kraken_cluster_moves runs in
%% this fixture).
-export([base_ctx/1, base_cleanup/1, script/3, script_as/3, engine_args/0, engine_path/0, standalone/1,
         free_port/0, rpc/5, wait_until/2, receive_pairs/3, sanitizer_reports/1, node_name/2,
         start_nodes/2, start_all/1, connect/2, owner/3, settled/3, node_atom/2, links_up/3,
         expect_in_order/2, next_second/0, closed_within/3, upstream_topics/2,
         receive_msgs/3, redis_connect/2, resp/1, resp_push/2, redis_expect/2,
         bytes_until_closed/3, pmessages/1, redis_pmessages/2, smessages/1,
         redis_messages/2, redis_smessages/2, redis_cli/4, redis_cli_output/2,
         cli_pmessages/1, publish_pattern_entries/3]).

-define(NTOPICS, 24).
-define(PER_CLIENT, 15).

cluster_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             {inorder,
              [{timeout, 60, {"membership: 3 cores, 2 proxies, links up",
                              fun() -> membership(Ctx) end}},
               {timeout, 60, {"each (entry, topic) reaches each subscriber exactly once, "
                              "never its publisher", fun() -> exactly_once(Ctx) end}},
               {timeout, 60, {"Redis clients through the cluster: SUBSCRIBE on a proxy, "
                              "PUBLISH on a core, with Kraken clients on other nodes",
                              fun() -> redis_through(Ctx) end}},
               {timeout, 60, {"Redis channel names that cannot travel on a link (empty, a "
                              "space, CR or LF) are refused with -ERR in a cluster, and do not "
                              "disturb the other subscribers", fun() -> redis_names(Ctx) end}},
               {timeout, 60, {"Redis patterns across the cluster: a PSUBSCRIBE on a proxy "
                              "and on a core gets each (entry, topic) published anywhere once; "
                              "NUMPAT counts local clients only", fun() -> redis_patterns(Ctx) end}},
               {timeout, 60, {"Redis shard channels across the cluster: SSUBSCRIBE on a proxy "
                              "and a core gets each SPUBLISH made anywhere once; channels of "
                              "the same names are apart", fun() -> redis_shards(Ctx) end}},
               {timeout, 60, {"acknowledged subscribes: an entry published on the owner as "
                              "soon as a proxy (or a core not owning the topic) answered "
                              "STORED always arrives",
                              fun() -> acked_subscribe(Ctx) end}},
               {timeout, 60, {"acknowledged subscribes: the same for a Redis SUBSCRIBE on a "
                              "proxy", fun() -> acked_redis_subscribe(Ctx) end}},
               {timeout, 60, {"acknowledged publishes: a publish through a node that does "
                              "not own the topic (Kraken, pipelined, Redis) is answered once "
                              "the owner has routed it", fun() -> acked_publish(Ctx) end}},
               {timeout, 60, {"retro_subscribe and register through a node that does not "
                              "own the topic: entries from its own retention when it held the "
                              "topic upstream since before the horizon, else from the owner",
                              fun() -> retro(Ctx) end}},
               {timeout, 60, {"retro_subscribe and register + subscribe through a proxy and a "
                              "core, topics nobody there held: every entry since the horizon, "
                              "exactly once, in order; NOT_FOUND only when the owner lost them",
                              fun() -> retro_upstream(Ctx) end}},
               {timeout, 60, {"retro_subscribe on a node holding the topic since after the "
                              "horizon, entries in flight: each entry exactly once, in order",
                              fun() -> retro_in_flight(Ctx) end}},
               {timeout, 60, {"retro_subscribe from before every node's start: NOT_FOUND "
                              "on every node, for every topic (the first core's owner-set "
                              "history does not vouch for what came before it)",
                              fun() -> retro_before_start(Ctx) end}},
               {timeout, 60, {"moves: a 4th core joins while every node publishes: "
                              "each (entry, topic) exactly once, nobody disconnected",
                              fun() -> kraken_cluster_moves:join(Ctx) end}},
               {timeout, 60, {"moves: a core drained (bin/kraken drain), then taken back "
                              "(undrain), while every node publishes: exactly once, nobody "
                              "disconnected", fun() -> kraken_cluster_moves:drain(Ctx) end}},
               {timeout, 60, {"moves: bin/kraken stop of a core drains it first: exactly "
                              "once, nobody disconnected",
                              fun() -> kraken_cluster_moves:stop(Ctx) end}},
               {timeout, 60, {"kill -9 of a core: its topics' holders disconnected within "
                              "3 s, the others undisturbed, topics moved",
                              fun() -> core_killed(Ctx) end}},
               {timeout, 60, {"SIGSTOP of a core: its topics' holders disconnected within "
                              "3 s; after SIGCONT it is live again and serves its topics; "
                              "right after SIGCONT its own clients lose nothing silently",
                              fun() -> core_hung(Ctx) end}},
               {timeout, 60, {"SIGSTOP of a core's engine only: holders disconnected within "
                              "3 s (link pings), its topics move (no heartbeat while its engine "
                              "does not answer); back after SIGCONT",
                              fun() -> engine_hung(Ctx) end}},
               {timeout, 60, {"kill -9 of a proxy: its clients reconnect to the other proxy "
                              "with retro_subscribe from the second of the last message they "
                              "saw, and miss nothing", fun() -> proxy_killed(Ctx) end}}]}
     end}.

%%% Set-up: five nodes

-define(CORES, [c1, c2, c3]).
-define(PROXIES, [p1, p2]).

setup() ->
    Ctx = base_ctx("kcl"),
    Names = ?CORES ++ ?PROXIES,
    Ports = maps:from_list([{N, free_port()} || N <- Names]),
    RedisPorts = maps:from_list([{N, free_port()} || N <- Names]),
    Ctx0 = Ctx#{ports => Ports, redis_ports => RedisPorts},
    %% c1 first, alone: the node it joins (c2) is not up yet, so it must
    %% keep trying; then the others together.
    T0 = erlang:system_time(second),
    %% A start that fails (a port taken meanwhile) fails the setup, and
    %% eunit then runs no cleanup: stop the nodes that did start here.
    try maps:from_list(start_nodes(Ctx0, [c1]) ++ start_nodes(Ctx0, Names -- [c1])) of
        OsPids -> Ctx0#{os_pids => OsPids, t0 => T0}
    catch
        Class:Reason:Stack ->
            cleanup(Ctx0#{os_pids => #{}}),
            erlang:raise(Class, Reason, Stack)
    end.

%% Starts nodes (bin/kraken start) at once: `[{Name, OsPid}]'.  A name not
%% among the fixture's ports gets free ones; a name not among the proxies is
%% a core; each joins c1 (c1 joins c2).
start_nodes(Ctx = #{ports := Ports, redis_ports := RedisPorts}, Ns) ->
    Engine = engine_args(),
    Join = fun(c1) -> c2; (_) -> c1 end,
    Args = fun(N) ->
                   Role = case lists:member(N, ?PROXIES) of true -> "proxy"; false -> "core" end,
                   Port = maps:get(N, Ports, free_port()),
                   ["start", "-kraken", "tcp_server_port", integer_to_list(Port),
                    "-kraken", "listen_ip", "\"127.0.0.1\"",
                    "-kraken", "redis_port",
                    integer_to_list(maps:get(N, RedisPorts, free_port())),
                    "-kraken", "role", Role,
                    "-kraken", "cluster_nodes",
                    "[" ++ node_name(Ctx, Join(N)) ++ "]"] ++ Engine
           end,
    start_all([{N, fun() -> script(Ctx, N, Args(N)) end} || N <- Ns]).

%% Runs each Start (a `bin/kraken start': {ExitStatus, Output}) at once and
%% waits for them all: `[{Name, OsPid}]'; a failed start fails the test.
start_all(Starts) ->
    Self = self(),
    [spawn_link(fun() -> Self ! {started, N, Start()} end) || {N, Start} <- Starts],
    [receive
         {started, N, {0, Out}} ->
             {match, [P]} = re:run(Out, "\\(os pid (\\d+)\\)",
                                   [{capture, all_but_first, list}]),
             {N, list_to_integer(P)};
         {started, N, Other} ->
             error({start_failed, N, Other})
     after 90000 -> error(start_timeout)
     end || {N, _} <- Starts].

cleanup(Ctx = #{tmp := Tmp, distributed := Distributed, os_pids := OsPids}) ->
    [_ = os:cmd("kill -CONT -" ++ integer_to_list(P) ++ " 2>/dev/null")
     || P <- maps:values(OsPids)],
    Self = self(),
    [spawn(fun() -> Self ! {stopped, script(Ctx, N, ["stop"])} end)
     || N <- [c4 | ?CORES ++ ?PROXIES]],   % c4: kraken_cluster_moves'
    [receive {stopped, _} -> ok after 60000 -> ok end || _ <- [c4 | ?CORES ++ ?PROXIES]],
    sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null")
     || P <- maps:values(OsPids)],
    Distributed andalso net_kernel:stop(),
    keep_logs(Tmp),
    _ = os:cmd("rm -rf '" ++ Tmp ++ "'"),
    ok.

%% The nodes' console logs of the last run, for a failure's post-mortem.
keep_logs(Tmp) ->
    Keep = "/tmp/kraken_cluster_test_logs",
    _ = os:cmd("rm -rf " ++ Keep ++ " && mkdir -p " ++ Keep ++ " && cp " ++ Tmp ++
                   "/*.console.log " ++ Keep ++ "/ 2>/dev/null"),
    ok.

script(Ctx, Name, Args) ->
    script_as(Ctx, node_name(Ctx, Name), Args).

%% bin/kraken COMMAND with KRAKEN_NODE_NAME NodeName (a short name, or
%% name@host).
script_as(#{script := Script, tmp := Tmp, ebin := Ebin}, NodeName, Args) ->
    Env = [{"KRAKEN_LOG_DIR", Tmp}, {"KRAKEN_EBIN", Ebin}, {"KRAKEN_NODE_NAME", NodeName}],
    Port = open_port({spawn_executable, Script},
                     [{args, Args}, {env, Env}, {cd, Tmp}, exit_status, stderr_to_stdout,
                      binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, binary_to_list(iolist_to_binary(lists:reverse(Acc)))}
    after 90000 -> error(script_timeout)
    end.

node_name(#{prefix := Prefix}, Name) ->
    Prefix ++ atom_to_list(Name).

node_atom(Ctx = #{host := Host}, Name) ->
    list_to_atom(node_name(Ctx, Name) ++ "@" ++ Host).

%% A port free now, below the kernel's ephemeral range (32768 and up here):
%% a port from that range may be taken by an outgoing connection (the
%% nodes' links, distribution) before the node started on it listens
%% ("address already in use", seen in setups that pick 20 ports at once).
%% Handed out in turn from a random start (an atomic counter shared by the
%% VM's processes), so that two calls never pick the same port before a
%% node listens on the first (random picks did, once in CI).
free_port() ->
    Next = case persistent_term:get({?MODULE, next_port}, undefined) of
               undefined ->
                   A = atomics:new(1, []),
                   atomics:put(A, 1, rand:uniform(12000)),
                   persistent_term:put({?MODULE, next_port}, A),
                   A;
               A -> A
           end,
    free_port(Next, 50).

free_port(_, 0) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port;
free_port(Next, Tries) ->
    Port = 20000 + atomics:add_get(Next, 1, 1) rem 12000,
    case gen_tcp:listen(Port, [{ip, {127, 0, 0, 1}}, {reuseaddr, true}]) of
        {ok, L} -> ok = gen_tcp:close(L), Port;
        {error, _} -> free_port(Next, Tries - 1)
    end.

rpc(Ctx, Name, M, F, A) ->
    rpc:call(node_atom(Ctx, Name), M, F, A, 10000).

wait_until(F, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    wait_until_(F, Deadline).

wait_until_(F, Deadline) ->
    case F() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error(timeout);
                false -> timer:sleep(50), wait_until_(F, Deadline)
            end
    end.

%% Whether the node's engine has Cores (names) as live cores, each link up.
links_up(Ctx, Name, Cores) ->
    Want = lists:sort([list_to_binary(atom_to_list(node_atom(Ctx, C))) || C <- Cores]),
    case rpc(Ctx, Name, kraken_engine, call, [cluster_status]) of
        L when is_list(L) ->
            lists:sort([N || {N, _, _, _, _, _, _, _, _} <- L]) =:= Want andalso
                lists:all(fun({_, S, _, _, _, _, _, _, _}) -> S =:= up orelse S =:= self end, L);
        _ ->
            false
    end.

%% Whether every node applies the same stable view, synced, in which
%% exactly Owners own the topics.
settled(Ctx, Nodes, Owners) ->
    Want = lists:sort([atom_to_binary(node_atom(Ctx, C)) || C <- Owners]),
    Views = [case rpc(Ctx, N, kraken_cluster, view, []) of
                 {V, true, _} -> V;
                 _ -> unsynced
             end || N <- Nodes],
    case lists:usort(Views) of
        [{_, stable, _, Want, Want}] -> true;
        _ -> false
    end.

%% The topics held upstream by a node's engine, summed over its links.
upstream_topics(Ctx, Name) ->
    lists:sum([T || {_, _, _, _, T, _, _, _, _} <- rpc(Ctx, Name, kraken_engine, call,
                                                        [cluster_status])]).

owner(Ctx, Name, Topic) ->
    case rpc(Ctx, Name, kraken_engine, call, [{cluster_owner, Topic}]) of
        local -> node_atom(Ctx, Name);
        Bin when is_binary(Bin) -> binary_to_atom(Bin)
    end.

connect(Ctx, Name) ->
    {ok, S} = kraken_client:connect({127, 0, 0, 1}, maps:get(Name, maps:get(ports, Ctx))),
    S.

%% A client of Name subscribed to Topic, retrying for up to 2 s while
%% the subscribe is refused: just after a core failed, a node that noticed
%% before the others refuses its topics until their heartbeats no longer
%% list it (docs/cluster.md, "Partitions"); a client retries.
subscribed(Ctx, Name, Topic) ->
    subscribed(Ctx, Name, Topic, erlang:monotonic_time(millisecond) + 2000).

subscribed(Ctx, Name, Topic, Deadline) ->
    C = connect(Ctx, Name),
    case kraken_client:subscribe(C, [Topic]) of
        ok ->
            C;
        {error, {server_error, <<"cluster core unavailable">>}} = E ->
            catch kraken_client:disconnect(C),
            erlang:monotonic_time(millisecond) < Deadline orelse error(E),
            timer:sleep(100),
            subscribed(Ctx, Name, Topic, Deadline)
    end.

%%% Tests

membership(Ctx) ->
    All = ?CORES ++ ?PROXIES,
    ok = wait_until(fun() -> lists:all(fun(N) -> links_up(Ctx, N, ?CORES) end, All) end,
                    20000),
    %% c1 started alone and owned everything; the others were moved in.
    ok = wait_until(fun() -> settled(Ctx, All, ?CORES) end, 20000),
    %% bin/kraken cluster_status on a proxy: every member, live, links up.
    {0, Out} = script(Ctx, p1, ["cluster_status"]),
    [?assert(re:run(Out, node_name(Ctx, N) ++ "@\\S+\\s+core\\s+127.0.0.1:\\d+\\s+\\S+ ago\\s+up",
                    [{capture, none}]) =:= match) || N <- ?CORES],
    ?assertMatch({match, _}, re:run(Out, node_name(Ctx, p2) ++ "@\\S+\\s+proxy")),
    ?assertMatch({match, _}, re:run(Out, node_name(Ctx, p1) ++ "@\\S+\\s+proxy\\s+\\S+\\s+self")),
    %% The links are no clients: on c1, with no client connected, 2 links
    %% out (to c2, c3) and 4 in (c2, c3, p1, p2).
    Stat = fun(Name) ->
                   {0, St} = script(Ctx, c1, ["stats"]),
                   {match, [V]} = re:run(St, "(?m)^" ++ Name ++ "\\s+(\\d+)$",
                                         [{capture, all_but_first, list}]),
                   list_to_integer(V)
           end,
    ok = wait_until(fun() -> Stat("cluster_links") =:= 6 end, 5000),
    ?assertEqual(0, Stat("curr_connections")),
    ?assertEqual(0, Stat("curr_connections_kraken")),
    ok.

exactly_once(Ctx) ->
    All = ?CORES ++ ?PROXIES,
    Topics = [list_to_binary("topic_" ++ integer_to_list(I)) || I <- lists:seq(1, ?NTOPICS)],
    %% The topics spread over the three cores, and every node agrees.
    Owners = [owner(Ctx, p1, T) || T <- Topics],
    ?assertEqual(Owners, [owner(Ctx, p2, T) || T <- Topics]),
    ?assertEqual(3, length(lists:usort(Owners))),
    %% Two clients on every node, each subscribed to every topic.
    Clients = [{{N, I}, connect(Ctx, N)} || N <- All, I <- [1, 2]],
    [ok = kraken_client:subscribe(S, Topics) || {_, S} <- Clients],
    %% Each node holds upstream exactly the topics it does not own.
    [ok = wait_until(fun() ->
                             Own = length([T || T <- Topics,
                                                owner(Ctx, N, T) =:= node_atom(Ctx, N)]),
                             upstream_topics(Ctx, N) =:= ?NTOPICS - Own
                     end, 10000) || N <- All],
    timer:sleep(300),   % the subscribe requests just written reach the cores
    %% Each client publishes entries of 1 to 3 topics (often on several cores).
    rand:seed(exsss, {1, 2, 3}),
    Published = [{Id, [{pick(Topics, 1 + rand:uniform(3) - 1), payload(Id, K)}
                       || K <- lists:seq(1, ?PER_CLIENT)]} || {Id, _} <- Clients],
    [ok = kraken_client:publish(S, [E]) || {Id, S} <- Clients,
                                           E <- proplists:get_value(Id, Published)],
    %% Expected per client: every (payload, topic) of the others' entries.
    [begin
         Expected = lists:sort([{P, T} || {Other, Entries} <- Published, Other =/= Id,
                                          {Ts, P} <- Entries, T <- Ts]),
         Got = receive_pairs(S, length(Expected), 15000),
         ?assertEqual({Id, length(Expected)}, {Id, length(Got)}),
         ?assertEqual({Id, []}, {Id, Got -- lists:usort(Got)}),   % no duplicate
         ?assertEqual({Id, Expected}, {Id, Got})
     end || {Id, S} <- Clients],
    %% Nothing more arrives later (no echo, no late duplicate).
    timer:sleep(300),
    [?assertEqual({Id, []}, {Id, kraken_client:receive_messages(S)}) || {Id, S} <- Clients],
    [kraken_client:disconnect(S) || {_, S} <- Clients],
    ok.

redis_through(Ctx) ->
    Chan = <<"redis_chan">>,
    Owner = owner(Ctx, p1, Chan),
    [Other | _] = [N || N <- ?CORES, node_atom(Ctx, N) =/= Owner],
    R = redis_connect(Ctx, p1),
    ok = gen_tcp:send(R, resp([<<"SUBSCRIBE">>, Chan])),
    ok = redis_expect(R, resp_push([<<"subscribe">>, Chan], 1)),
    S = connect(Ctx, p2), ok = kraken_client:subscribe(S, [Chan]),
    ok = wait_until(fun() -> upstream_topics(Ctx, p1) =:= 1 andalso
                                 upstream_topics(Ctx, p2) =:= 1 end, 5000),
    timer:sleep(300),
    %% A Kraken publish on a core that does not own the channel.
    K = connect(Ctx, Other),
    ok = kraken_client:publish(K, [{[Chan], <<"from kraken">>}]),
    ok = redis_expect(R, resp_message(Chan, <<"from kraken">>)),
    ?assertEqual([{<<"from kraken">>, Chan}], receive_pairs(S, 1, 5000)),
    %% A Redis PUBLISH on that core reaches the Kraken and Redis subscribers
    %% on the proxies (its reply counts local receivers only: 0).
    R2 = redis_connect(Ctx, Other),
    ok = gen_tcp:send(R2, resp([<<"PUBLISH">>, Chan, <<"from redis">>])),
    ok = redis_expect(R2, <<":0\r\n">>),
    ok = redis_expect(R, resp_message(Chan, <<"from redis">>)),
    ?assertEqual([{<<"from redis">>, Chan}], receive_pairs(S, 1, 5000)),
    [gen_tcp:close(X) || X <- [R, R2]],
    [kraken_client:disconnect(X) || X <- [S, K]],
    ok.

%% Links write topics space-separated on lines: a Redis channel `rn_a b'
%% would subscribe (then unsubscribe) the proxy's link to `rn_a' and `b' at
%% the core, and `PUBLISH "" x' would make the core answer CLIENT_ERROR and
%% close the link.  In a cluster such names are refused whole (-ERR, nothing
%% subscribed or published, the connection stays); a Kraken subscriber of
%% `rn_a' on the same proxy keeps getting its entries.
redis_names(Ctx) ->
    A = <<"rn_a">>,
    Bad = [<<"rn_a b">>, <<>>, <<"rn_a\r\nb">>, <<"rn_a\n">>],
    Err = <<"-ERR channel name not allowed in a cluster: empty, or with a space, CR or LF\r\n">>,
    [Core | _] = [N || N <- ?CORES, node_atom(Ctx, N) =:= owner(Ctx, p1, A)],
    K = connect(Ctx, p1), ok = kraken_client:subscribe(K, [A]),
    R = redis_connect(Ctx, p1),
    [begin
         ok = gen_tcp:send(R, resp([<<"SUBSCRIBE">>, B])),
         ok = redis_expect(R, Err),
         %% Several channels, one bad: none is subscribed, one error.
         ok = gen_tcp:send(R, resp([<<"SUBSCRIBE">>, <<"rn_ok">>, B])),
         ok = redis_expect(R, Err),
         ok = gen_tcp:send(R, resp([<<"KRAKEN.RETROSUBSCRIBE">>, <<"0">>, <<"rn_ok">>, B])),
         ok = redis_expect(R, Err),
         ok = gen_tcp:send(R, resp([<<"UNSUBSCRIBE">>, B])),
         ok = redis_expect(R, resp_push([<<"unsubscribe">>, B], 0)),
         ok = gen_tcp:send(R, resp([<<"PUBLISH">>, B, <<"x">>])),
         ok = redis_expect(R, Err)
     end || B <- Bad],
    %% Still not subscribed to anything: PING answers +PONG (RESP2).
    ok = gen_tcp:send(R, resp([<<"PING">>])),
    ok = redis_expect(R, <<"+PONG\r\n">>),
    %% Shard channels travel too (docs/cluster.md, "Shard channels").
    ok = gen_tcp:send(R, resp([<<"SPUBLISH">>, <<"rn_a b">>, <<"x">>])),
    ok = redis_expect(R, Err),
    ok = gen_tcp:send(R, resp([<<"SSUBSCRIBE">>, <<"rn_a b">>])),
    ok = redis_expect(R, Err),
    %% The link's subscription to rn_a stands, and the link is up.
    P = connect(Ctx, Core),
    ok = kraken_client:publish(P, [{[A], <<"still">>}]),
    ?assertEqual([{<<"still">>, A}], receive_pairs(K, 1, 5000)),
    %% The rule is on channels, not messages (any bytes there).
    ok = gen_tcp:send(R, resp([<<"PUBLISH">>, A, <<"thr ough\r\n">>])),
    ok = redis_expect(R, <<":1\r\n">>),
    ?assertEqual([{<<"thr ough\r\n">>, A}], receive_pairs(K, 1, 5000)),
    gen_tcp:close(R),
    [kraken_client:disconnect(X) || X <- [K, P]],
    ok.

%% Redis patterns across the cluster (docs/cluster.md, "Patterns"): a
%% PSUBSCRIBE on a proxy and one on a core get, exactly once per (entry,
%% topic), what is published on every node to channels of all three cores:
%% Kraken entries of one topic and one entry over every topic (and one that
%% does not match), Redis PUBLISHes on the subscriber's own node and on
%% others; published the moment the PSUBSCRIBE is answered (it waits for
%% every core).  NUMPAT counts the node's own clients, not the other nodes'
%% patterns it holds for them.  A pattern that cannot travel is refused.
%% Before, each subscriber got only what was published on its own node and
%% on the channels its node held anyway: here, nothing else.
redis_patterns(Ctx) ->
    Cands = [list_to_binary("pat_" ++ integer_to_list(I)) || I <- lists:seq(1, 90)],
    Topics = lists:append([lists:sublist([T || T <- Cands, owner(Ctx, p1, T) =:= node_atom(Ctx, C)],
                                         4) || C <- ?CORES]),
    ?assertEqual(12, length(Topics)),
    Subs = [redis_connect(Ctx, N) || N <- [p1, c1]],
    Pat = <<"pat_*">>,
    [begin
         ok = gen_tcp:send(R, resp([<<"PSUBSCRIBE">>, Pat])),
         ok = redis_expect(R, resp_push([<<"psubscribe">>, Pat], 1))
     end || R <- Subs],
    %% And Debian's redis-cli, a client nobody here wrote, on p2.
    Cli = redis_cli(Ctx, p2, ["psubscribe", "pat_*"], <<"psubscribe\npat_*\n1\n">>),
    [RP | _] = Subs,
    ok = gen_tcp:send(RP, resp([<<"PSUBSCRIBE">>, <<"pat a">>])),
    ok = redis_expect(RP, <<"-ERR pattern not allowed in a cluster: empty, or with a space, "
                            "CR or LF\r\n">>),
    Kraken = [{N, connect(Ctx, N)} || N <- [p2, c2, c3, p1]],
    Redis = [{N, redis_connect(Ctx, N)} || N <- [p1, c3]],
    Expected = publish_pattern_entries(Kraken, Redis, Topics),
    %% PUBLISH counts this node's own receivers: on p1 its pattern
    %% subscriber, on c3 nobody (the others' patterns it holds do not count).
    [ok = redis_expect(R, maps:get(N, #{p1 => <<":1\r\n">>, c3 => <<":0\r\n">>}))
     || {N, R} <- Redis, _ <- Topics],
    [?assertEqual({R, Expected}, {R, lists:sort(redis_pmessages(R, length(Expected)))})
     || R <- Subs],
    %% redis-cli printed each as `pmessage', the pattern, the channel, the
    %% message, one per line.
    CliOut = redis_cli_output(Cli, 4 * length(Expected) + 3),
    ?assertEqual(lists:sort([{P, T} || {P, T} <- Expected]),
                 lists:sort(cli_pmessages(binary:split(CliOut, <<"\n">>, [global])))),
    %% Nothing more: no duplicate, nothing of `other'.
    timer:sleep(300),
    [?assertEqual({R, {error, timeout}, <<>>}, {R, gen_tcp:recv(R, 0, 100), get({redis_buf, R})})
     || R <- Subs],
    Numpat = fun(N) ->
                     R = redis_connect(Ctx, N),
                     ok = gen_tcp:send(R, resp([<<"PUBSUB">>, <<"NUMPAT">>])),
                     {ok, B} = gen_tcp:recv(R, 0, 5000),
                     gen_tcp:close(R),
                     B
             end,
    ?assertEqual(<<":1\r\n">>, Numpat(c1)),
    ?assertEqual(<<":0\r\n">>, Numpat(c2)),
    [gen_tcp:close(R) || R <- Subs ++ [R || {_, R} <- Redis]],
    [kraken_client:disconnect(S) || {_, S} <- Kraken],
    ok.

%% For the pattern tests: each Kraken client {Node, Socket} publishes one
%% entry per topic, one over all of them and `other', and one to `other'
%% only; each Redis client {Node, Socket} PUBLISHes one per topic (its
%% replies are left unread).  Returns the sorted {Payload, Topic} pairs a
%% subscriber of every topic (not `other') is to get.
publish_pattern_entries(Kraken, Redis, Topics) ->
    Published =
        lists:append(
          [begin
               One = [{[T], iolist_to_binary([atom_to_list(N), "/", T])} || T <- Topics],
               All = {[<<"other">> | Topics], iolist_to_binary([atom_to_list(N), "/all"])},
               ok = kraken_client:publish(S, One ++ [All, {[<<"other">>], <<"x">>}]),
               One ++ [All]
           end || {N, S} <- Kraken]),
    RedisPub =
        [begin
             Msg = iolist_to_binary(["redis/", atom_to_list(N), "/", T]),
             ok = gen_tcp:send(R, resp([<<"PUBLISH">>, T, Msg])),
             {[T], Msg}
         end || {N, R} <- Redis, T <- Topics],
    lists:sort([{P, T} || {Ts, P} <- Published ++ RedisPub, T <- Ts, T =/= <<"other">>]).

%% Redis shard channels across the cluster (docs/cluster.md, "Shard
%% channels"): an SSUBSCRIBE on a proxy and one on a core, to 12 shard
%% channels spread over the three cores, get each SPUBLISH made on every
%% node once, from the moment SSUBSCRIBE is answered; SPUBLISH's count is
%% the node's own receivers.  Channels of the same names are another
%% space: a PUBLISH reaches neither, and a channel subscriber (Redis, or
%% Kraken) gets no SPUBLISH.  After SUNSUBSCRIBE nothing more comes.
%% Before, each subscriber got only the SPUBLISHes made on its own node.
redis_shards(Ctx) ->
    %% Four of each core (by the hash, as the engine computes it).
    Cands = [list_to_binary("shard_" ++ integer_to_list(I)) || I <- lists:seq(1, 90)],
    Chans = lists:append([lists:sublist([T || T <- Cands, owner(Ctx, p1, T) =:= node_atom(Ctx, C)],
                                        4) || C <- ?CORES]),
    ?assertEqual(12, length(Chans)),
    Subs = [redis_connect(Ctx, N) || N <- [p1, c1]],
    [begin
         ok = gen_tcp:send(R, resp([<<"SSUBSCRIBE">> | Chans])),
         [ok = redis_expect(R, resp_push([<<"ssubscribe">>, T], I))
          || {I, T} <- lists:zip(lists:seq(1, length(Chans)), Chans)]
     end || R <- Subs],
    [RP, RC] = Subs,
    RS = redis_connect(Ctx, p2),   % a channel subscriber of the same names
    ok = gen_tcp:send(RS, resp([<<"SUBSCRIBE">>, hd(Chans)])),
    ok = redis_expect(RS, resp_push([<<"subscribe">>, hd(Chans)], 1)),
    K = connect(Ctx, p2), ok = kraken_client:subscribe(K, Chans),
    ok = wait_until(fun() -> upstream_topics(Ctx, p2) =:= 12 end, 5000),
    Pubs = [{N, redis_connect(Ctx, N)} || N <- [p2, c2, c3, p1]],
    Published =
        [begin
             Msg = iolist_to_binary(["s/", atom_to_list(N), "/", T]),
             ok = gen_tcp:send(R, resp([<<"SPUBLISH">>, T, Msg])),
             {Msg, T}
         end || {N, R} <- Pubs, T <- Chans],
    %% SPUBLISH counts as PUBLISH does (docs/push.md): the node's own
    %% subscribers, and on the owner one per node holding it there (p1, c1).
    [ok = redis_expect(R, case node_atom(Ctx, N) =:= owner(Ctx, p1, T) of
                              true -> <<":2\r\n">>;
                              false when N =:= p1 -> <<":1\r\n">>;
                              false -> <<":0\r\n">>
                          end)
     || {N, R} <- Pubs, T <- Chans],
    %% A channel PUBLISH of a shard channel's name: channels only.
    {_, R1} = hd(Pubs),
    ok = gen_tcp:send(R1, resp([<<"PUBLISH">>, hd(Chans), <<"channel">>])),
    ok = redis_expect(R1, <<":2\r\n">>),   % RS and K, both on p2
    ok = redis_expect(RS, resp_message(hd(Chans), <<"channel">>)),
    Expected = lists:sort(Published),
    [?assertEqual({R, Expected}, {R, lists:sort(redis_smessages(R, length(Expected)))})
     || R <- Subs],
    timer:sleep(300),
    [?assertEqual({R, {error, timeout}, <<>>}, {R, gen_tcp:recv(R, 0, 100), get({redis_buf, R})})
     || R <- Subs ++ [RS]],
    ?assertEqual([{<<"channel">>, hd(Chans)}], receive_pairs(K, 1, 1000)),
    %% SUNSUBSCRIBE on p1: nothing more there; c1's subscriber goes on.
    ok = gen_tcp:send(RP, resp([<<"SUNSUBSCRIBE">> | Chans])),
    [ok = redis_expect(RP, resp_push([<<"sunsubscribe">>, T], I))
     || {I, T} <- lists:zip(lists:reverse(lists:seq(0, length(Chans) - 1)), Chans)],
    {_, R3} = lists:keyfind(c3, 1, Pubs),
    [begin
         ok = gen_tcp:send(R3, resp([<<"SPUBLISH">>, T, <<"after">>])),
         {match, _} = re:run(redis_line(R3), "^:[0-2]\r\n$")   % (p1's unsubscribe may
     end || T <- Chans],                                          %  still be on its way)
    ?assertEqual(lists:sort([{<<"after">>, T} || T <- Chans]),
                 lists:sort(redis_smessages(RC, length(Chans)))),
    ?assertEqual({error, timeout}, gen_tcp:recv(RP, 0, 300)),
    [gen_tcp:close(R) || R <- Subs ++ [RS] ++ [R || {_, R} <- Pubs]],
    kraken_client:disconnect(K),
    ok.

%% redis-cli ARGS against node N's Redis port, its output as a port; returns
%% once it printed Ready (its subscription confirmed).
redis_cli(Ctx, N, Args, Ready) ->
    Port = open_port({spawn_executable, os:find_executable("timeout")},
                     [{args, ["20", "redis-cli", "-p",
                              integer_to_list(maps:get(N, maps:get(redis_ports, Ctx))) | Args]},
                      binary, exit_status, stderr_to_stdout]),
    put({cli, Port}, <<>>),
    _ = redis_cli_until(Port, fun(Out) -> binary:match(Out, Ready) =/= nomatch end),
    Port.

%% What the redis-cli port printed once it has Lines lines (or 5 s passed);
%% then it is stopped.
redis_cli_output(Port, Lines) ->
    Out = redis_cli_until(Port, fun(O) -> length(binary:matches(O, <<"\n">>)) >= Lines end),
    {os_pid, Pid} = erlang:port_info(Port, os_pid),
    _ = os:cmd("kill " ++ integer_to_list(Pid)),
    catch port_close(Port),
    Out.

redis_cli_until(Port, Done) ->
    Deadline = erlang:monotonic_time(millisecond) + 5000,
    redis_cli_until(Port, Done, Deadline).

redis_cli_until(Port, Done, Deadline) ->
    Out = get({cli, Port}),
    case Done(Out) orelse erlang:monotonic_time(millisecond) > Deadline of
        true ->
            Out;
        false ->
            receive
                {Port, {data, D}} -> put({cli, Port}, <<Out/binary, D/binary>>);
                {Port, {exit_status, S}} -> error({redis_cli_exited, S, Out})
            after 100 -> ok
            end,
            redis_cli_until(Port, Done, Deadline)
    end.

%% {Message, Channel} of each `pmessage' in redis-cli's lines.
cli_pmessages([<<"pmessage">>, _Pat, Chan, Msg | Rest]) -> [{Msg, Chan} | cli_pmessages(Rest)];
cli_pmessages([_ | Rest]) -> cli_pmessages(Rest);
cli_pmessages([]) -> [].

%% The next line on R, CR LF included.
redis_line(R) ->
    Buf = get({redis_buf, R}),
    case binary:split(Buf, <<"\r\n">>) of
        [Line, Rest] ->
            put({redis_buf, R}, Rest),
            <<Line/binary, "\r\n">>;
        [_] ->
            {ok, More} = gen_tcp:recv(R, 0, 5000),
            put({redis_buf, R}, <<Buf/binary, More/binary>>),
            redis_line(R)
    end.

%% The next Count `message' frames on R (RESP2): [{Message, Channel}].
redis_messages(R, Count) ->
    put(frames, fun(Buf) -> frames(Buf, <<"*3\r\n$7\r\nmessage\r\n">>, 2) end),
    redis_frames(R, Count).

%% The next Count `smessage' frames on R (RESP2): [{Message, Channel}].
redis_smessages(R, Count) ->
    put(frames, fun smessages/1),
    redis_frames(R, Count).

%% The next Count `pmessage' frames on R (RESP2): [{Message, Channel}].
redis_pmessages(R, Count) ->
    put(frames, fun pmessages/1),
    redis_frames(R, Count).

redis_frames(R, Count) ->
    redis_frames(R, Count, erlang:monotonic_time(millisecond) + 5000, []).

redis_frames(R, Count, Deadline, Acc) ->
    Parse = get(frames),
    {Got, Rest} = Parse(get({redis_buf, R})),
    put({redis_buf, R}, Rest),
    Acc1 = Got ++ Acc,
    case length(Acc1) >= Count of
        true ->
            Acc1;
        false ->
            Left = Deadline - erlang:monotonic_time(millisecond),
            Left > 0 orelse error({redis_timeout, length(Acc1), Count}),
            case gen_tcp:recv(R, 0, Left) of
                {ok, More} ->
                    put({redis_buf, R}, <<Rest/binary, More/binary>>),
                    redis_frames(R, Count, Deadline, Acc1);
                {error, timeout} ->
                    error({redis_timeout, length(Acc1), Count})
            end
    end.

%% The complete `pmessage' frames at the head of Buf: {[{Message, Channel}],
%% Rest}; anything else there is an error.
pmessages(Buf) ->
    frames(Buf, <<"*4\r\n$8\r\npmessage\r\n">>, 3).

%% The same for `smessage' frames.
smessages(Buf) ->
    frames(Buf, <<"*3\r\n$8\r\nsmessage\r\n">>, 2).

frames(Buf, Head, NBulks) ->
    HL = byte_size(Head),
    case Buf of
        <<Head:HL/binary, Rest/binary>> ->
            case bulks(Rest, NBulks, []) of
                {Bulks, Tail} ->
                    [Chan, Msg] = lists:nthtail(NBulks - 2, Bulks),
                    {More, Tail1} = frames(Tail, Head, NBulks),
                    {[{Msg, Chan} | More], Tail1};
                more ->
                    {[], Buf}
            end;
        _ when byte_size(Buf) < HL ->
            case binary:part(Head, 0, byte_size(Buf)) of
                Buf -> {[], Buf};
                _ -> error({unexpected_redis_bytes, Buf})
            end;
        _ ->
            error({unexpected_redis_bytes, Buf})
    end.

bulks(Tail, 0, Acc) ->
    {lists:reverse(Acc), Tail};
bulks(<<"$", Rest/binary>>, K, Acc) ->
    case binary:split(Rest, <<"\r\n">>) of
        [Len, Body] ->
            L = binary_to_integer(Len),
            case Body of
                <<B:L/binary, "\r\n", Tail/binary>> -> bulks(Tail, K - 1, [B | Acc]);
                _ -> more
            end;
        _ ->
            more
    end;
bulks(_, _, _) ->
    more.

%% Many fresh topics, one at a time: subscribe on a node that does not own
%% it, and the moment STORED is in, publish on its owner.  Before
%% acknowledged subscribes the upstream subscription could still be on its
%% way to the owner then, and the entry was lost.  Three ways, in turn: a
%% client on a proxy; a client on a core (topics it does not own); and on
%% the other proxy a second subscriber that comes while the first one's
%% subscription (sent with noreply) is not confirmed yet: it waits too (a
%% large entry published there just before, to a topic of the same core,
%% holds the upstream subscription on the link a little longer).
-define(ACK_ROUNDS, 150).

acked_subscribe(Ctx) ->
    Pubs = maps:from_list([{node_atom(Ctx, N), connect(Ctx, N)} || N <- ?CORES]),
    Subs = [{p1, connect(Ctx, p1)}, {c3, connect(Ctx, c3)}, {p2, connect(Ctx, p2)},
            {p2_first, connect(Ctx, p2)}],
    First = proplists:get_value(p2_first, Subs),
    Bulk = connect(Ctx, p2),
    Big = binary:copy(<<"x">>, 1 bsl 20),
    BulkTopics = maps:from_list([{owner(Ctx, p2, B), B}
                                 || B <- [list_to_binary("ack_bulk_" ++ integer_to_list(I))
                                          || I <- lists:seq(1, 30)]]),
    ?assertEqual(3, maps:size(BulkTopics)),
    C3 = node_atom(Ctx, c3),
    Rounds = [{Node, S, T, owner(Ctx, p1, T)}
              || I <- lists:seq(1, ?ACK_ROUNDS),
                 {Node, S} <- [lists:nth(1 + I rem 3, Subs)],
                 T <- [list_to_binary("ack_" ++ integer_to_list(I))]],
    ?assertEqual(3, length(lists:usort([O || {_, _, _, O} <- Rounds]))),
    Done = lists:append(
             [begin
                  Firsts = case Node of
                               p2 ->
                                   ok = kraken_client:publish(
                                          Bulk, [{[maps:get(Owner, BulkTopics)], Big}]),
                                   ok = gen_tcp:send(First, [<<"set subscribe 0 0 ">>,
                                                             integer_to_binary(byte_size(T)),
                                                             <<" noreply\r\n">>, T, <<"\r\n">>]),
                                   [{First, T}];
                               _ -> []
                           end,
                  ok = kraken_client:subscribe(S, [T]),
                  ok = kraken_client:publish(maps:get(Owner, Pubs), [{[T], T}]),
                  [{S, T} | Firsts]
              end || {Node, S, T, Owner} <- Rounds, not (Node =:= c3 andalso Owner =:= C3)]),
    [begin
         Expected = lists:sort([{T, T} || {S1, T} <- Done, S1 =:= S]),
         ?assertEqual({Node, Expected}, {Node, receive_pairs(S, length(Expected), 5000)})
     end || {Node, S} <- Subs],
    [kraken_client:disconnect(S) || S <- [Bulk | maps:values(Pubs)] ++ [S || {_, S} <- Subs]],
    ok.

acked_redis_subscribe(Ctx) ->
    Pubs = maps:from_list([{node_atom(Ctx, N), connect(Ctx, N)} || N <- ?CORES]),
    R = redis_connect(Ctx, p2),
    Rounds = [{I, T, owner(Ctx, p2, T)}
              || I <- lists:seq(1, ?ACK_ROUNDS),
                 T <- [list_to_binary("rack_" ++ integer_to_list(I))]],
    [begin
         ok = gen_tcp:send(R, resp([<<"SUBSCRIBE">>, T])),
         ok = redis_expect(R, resp_push([<<"subscribe">>, T], I)),
         ok = kraken_client:publish(maps:get(Owner, Pubs), [{[T], T}]),
         ok = redis_expect(R, resp_message(T, T))
     end || {I, T, Owner} <- Rounds],
    gen_tcp:close(R),
    [kraken_client:disconnect(S) || S <- maps:values(Pubs)],
    ok.

%% A publish through a node that does not own the topic is answered once the
%% owner has routed it: the owner's subscriber, polled right after the reply,
%% has it.  Before acknowledged publishes the reply came at once, while the
%% entry (a large one here, so that it takes a while) was still on the link.
acked_publish(Ctx) ->
    Cands = [list_to_binary("apub_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    Topics = [{C, hd([T || T <- Cands, owner(Ctx, p1, T) =:= node_atom(Ctx, C)])}
              || C <- ?CORES],
    Subs = [{T, begin S = connect(Ctx, C), ok = kraken_client:subscribe(S, [T]), S end}
            || {C, T} <- Topics],
    Big = binary:copy(<<"y">>, 1 bsl 19),
    P = connect(Ctx, p1),
    R = redis_connect(Ctx, p2),
    Rounds = [{I, T, S} || I <- lists:seq(1, 4), {T, S} <- Subs],
    [begin
         %% Kraken: a large entry and a small one in one request.
         Small = iolist_to_binary(io_lib:format("k~b", [I])),
         ok = kraken_client:publish(P, [{[T], Big}, {[T], Small}]),
         ?assertEqual({T, I, [{[T], Big}, {[T], Small}]},
                      {T, I, kraken_client:receive_messages(S)}),
         %% Redis PUBLISH on the other proxy (no subscriber there: 0).
         ok = gen_tcp:send(R, resp([<<"PUBLISH">>, T, Big])),
         ok = redis_expect(R, <<":0\r\n">>),
         ?assertEqual({T, I, [{[T], Big}]}, {T, I, kraken_client:receive_messages(S)})
     end || {I, T, S} <- Rounds],
    %% Pipelined: 100 publishes (the first a large one) in one write, then
    %% their 100 replies; every entry is at the owners by then.
    Pipe = [{T, iolist_to_binary(io_lib:format("p~b", [J]))}
            || J <- lists:seq(1, 100), {_, T} <- [lists:nth(1 + J rem 3, Topics)]],
    {ok, B1} = kraken_client:serialize_entries([{[element(1, hd(Pipe))], Big}]),
    Reqs = [[<<"set publish 0 0 ">>, integer_to_binary(iolist_size(B1)), <<"\r\n">>, B1,
             <<"\r\n">>] |
            [begin
                 {ok, B} = kraken_client:serialize_entries([{[T], M}]),
                 [<<"set publish 0 0 ">>, integer_to_binary(iolist_size(B)), <<"\r\n">>, B,
                  <<"\r\n">>]
             end || {T, M} <- Pipe]],
    ok = gen_tcp:send(P, Reqs),
    [{ok, <<"STORED\r\n">>} = gen_tcp:recv(P, 0, 5000) || _ <- Reqs],
    [begin
         Want = [{[T], M} || {T1, M} <- Pipe, T1 =:= T],
         Got = [E || {_, M} = E <- kraken_client:receive_messages(S), M =/= Big],
         ?assertEqual({T, Want}, {T, Got})
     end || {T, S} <- Subs],
    %% A quit right behind a held publish: the connection closes only after
    %% the confirmed STORED (Kraken: the quit waits for the release).
    [{T1, S1} | _] = Subs,
    {ok, QS} = gen_tcp:connect({127, 0, 0, 1}, maps:get(p1, maps:get(ports, Ctx)),
                               [binary, {active, false}]),
    {ok, BQ} = kraken_client:serialize_entries([{[T1], Big} || _ <- lists:seq(1, 4)]),
    ok = gen_tcp:send(QS, [<<"set publish 0 0 ">>, integer_to_binary(iolist_size(BQ)),
                           <<"\r\n">>, BQ, <<"\r\nquit\r\n">>]),
    ?assertEqual(<<"STORED\r\n">>, bytes_until_closed(QS, erlang:monotonic_time(millisecond),
                                                       5000)),
    ?assertEqual([{[T1], Big} || _ <- lists:seq(1, 4)], kraken_client:receive_messages(S1)),
    %% The same with a Redis QUIT (executed while the PUBLISH is held).
    RQ = redis_connect(Ctx, p1),
    ok = gen_tcp:send(RQ, [resp([<<"PUBLISH">>, T1, Big]) || _ <- lists:seq(1, 4)] ++
                          [resp([<<"QUIT">>])]),
    ?assertEqual(<<":0\r\n:0\r\n:0\r\n:0\r\n+OK\r\n">>,
                 bytes_until_closed(RQ, erlang:monotonic_time(millisecond), 5000)),
    ?assertEqual([{[T1], Big} || _ <- lists:seq(1, 4)], kraken_client:receive_messages(S1)),
    gen_tcp:close(R),
    [kraken_client:disconnect(S) || S <- [P | [S || {_, S} <- Subs]]],
    ok.

redis_connect(Ctx, Name) ->
    {ok, R} = gen_tcp:connect({127, 0, 0, 1}, maps:get(Name, maps:get(redis_ports, Ctx)),
                              [binary, {active, false}]),
    put({redis_buf, R}, <<>>),
    R.

resp(Args) ->
    [io_lib:format("*~b\r\n", [length(Args)]),
     [[io_lib:format("$~b\r\n", [byte_size(A)]), A, "\r\n"] || A <- Args]].

resp_push([Kind, Chan], N) ->
    iolist_to_binary([<<"*3\r\n">>, bulk(Kind), bulk(Chan), io_lib:format(":~b\r\n", [N])]).

resp_message(Chan, Msg) ->
    iolist_to_binary([<<"*3\r\n">>, bulk(<<"message">>), bulk(Chan), bulk(Msg)]).

bulk(B) ->
    [io_lib:format("$~b\r\n", [byte_size(B)]), B, "\r\n"].

%% Reads from R until its buffer starts with Expected (then drops it).
redis_expect(R, Expected) ->
    Deadline = erlang:monotonic_time(millisecond) + 5000,
    redis_expect(R, Expected, Deadline).

redis_expect(R, Expected, Deadline) ->
    Buf = get({redis_buf, R}),
    N = byte_size(Expected),
    case Buf of
        <<Expected:N/binary, Rest/binary>> ->
            put({redis_buf, R}, Rest),
            ok;
        _ when byte_size(Buf) >= N ->
            error({unexpected_redis_bytes, Buf, Expected});
        _ ->
            Left = Deadline - erlang:monotonic_time(millisecond),
            Left > 0 orelse error({redis_timeout, Buf, Expected}),
            {ok, More} = gen_tcp:recv(R, 0, Left),
            put({redis_buf, R}, <<Buf/binary, More/binary>>),
            redis_expect(R, Expected, Deadline)
    end.

%% A horizon before any node of the cluster started: whatever was published
%% then (to an earlier cluster of these names, restarted whole since) is
%% gone, so every node answers NOT_FOUND, as a single node does for a
%% horizon before its start.  Before, c1, the first core (its first owner
%% set was c1 alone), took its history as reaching back to any horizon:
%% for the topics that moved from it to c2 and c3 it asked them for what
%% entered there since (nothing) and answered STORED: a client resuming
%% after a restart of the whole cluster missed entries silently.
retro_before_start(Ctx = #{t0 := T0}) ->
    H = T0 - 2,
    Topics = [<<"before_start_", (integer_to_binary(I))/binary>> || I <- lists:seq(1, 16)],
    Retro = fun(N, T) ->
                    C = connect(Ctx, N),
                    R = kraken_client:retro_subscribe(C, H, [T]),
                    kraken_client:disconnect(C),
                    R
            end,
    Got = [{N, T, Retro(N, T)} || N <- ?CORES ++ ?PROXIES, T <- Topics],
    ?assertEqual([], [G || G = {_, _, R} <- Got, R =/= {error, not_found}]).

retro(Ctx) ->
    T = <<"retro_topic">>,
    Owner = owner(Ctx, p1, T),
    [OwnerName] = [N || N <- ?CORES, node_atom(Ctx, N) =:= Owner],
    [Other | _] = [N || N <- ?CORES, N =/= OwnerName],
    A = connect(Ctx, p1), ok = kraken_client:subscribe(A, [T]),   % p1 holds T upstream
    timer:sleep(1100),
    H = erlang:system_time(second),
    %% An entry published strictly after second H, from another node.
    timer:sleep(1000 - erlang:system_time(millisecond) rem 1000 + 20),
    Pub = connect(Ctx, p2),
    ok = kraken_client:publish(Pub, [{[T], <<"after the horizon">>}]),
    ok = wait_until(fun() -> kraken_client:receive_messages(A) =/= [] end, 5000),
    Entry = [{[T], <<"after the horizon">>}],
    %% p1 has held T since before H: its retention has the entry.
    B = connect(Ctx, p1), ok = kraken_client:retro_subscribe(B, H, [T]),
    ?assertEqual(Entry, kraken_client:receive_messages(B)),
    %% The owner: as on a single node.
    D = connect(Ctx, OwnerName), ok = kraken_client:retro_subscribe(D, H, [T]),
    ?assertEqual(Entry, kraken_client:receive_messages(D)),
    %% A core that does not own T and did not hold it asks the owner.
    C = connect(Ctx, Other),
    ?assertEqual(ok, kraken_client:retro_subscribe(C, H, [T])),
    ?assertEqual(Entry, kraken_client:receive_messages(C)),
    %% The publisher's proxy, for a topic nobody published to: nothing.
    ?assertEqual(ok, kraken_client:retro_subscribe(Pub, H, [<<"retro_other">>])),
    ?assertEqual([], kraken_client:receive_messages(Pub)),
    %% register + subscribe on a node not holding the topic yet: STORED.
    E = connect(Ctx, p2),
    ok = kraken_client:register(E),
    ?assertEqual(ok, kraken_client:subscribe(E, [<<"retro_fresh">>])),
    %% ... but on a node holding it upstream already: STORED.
    F = connect(Ctx, p1),
    ok = kraken_client:register(F),
    ?assertEqual(ok, kraken_client:subscribe(F, [T])),
    [kraken_client:disconnect(S) || S <- [A, B, C, D, E, F, Pub]],
    ok.

%% Topics nobody held on p2 nor on the core that does not own them: one per
%% core.  Entries are published after the horizon H by a client on a core
%% and by a client on p2 itself (p2 forwarded those: the owner leaves them
%% out of its answer to p2's link, p2's retention has them), some of them
%% spanning cores.  Before plan item 3 each of these retroactive
%% subscriptions answered NOT_FOUND.
retro_upstream(Ctx) ->
    Topics = [T1, T2, T3] = [fresh_topic(Ctx, "rup_", C) || C <- ?CORES],
    CorePub = connect(Ctx, c1),
    LocalPub = connect(Ctx, p2),
    ok = kraken_client:publish(CorePub, [{Topics, <<"before">>}]),
    H = next_second(),
    Entries = [{CorePub, [T1], <<"c1">>}, {LocalPub, [T2], <<"p2 a">>},
               {CorePub, [T1, T2, T3], <<"c2">>}, {LocalPub, [T3, T1], <<"p2 b">>},
               {CorePub, [T3], <<"c3">>}, {LocalPub, [T2], <<"p2 c">>}],
    [ok = kraken_client:publish(P, [{Ts, M}]) || {P, Ts, M} <- Entries],
    timer:sleep(200),
    Expected = fun(Want) -> [{M, T} || {_, Ts, M} <- Entries, T <- Ts, lists:member(T, Want)]
               end,
    %% A client on p2, which held none of the topics.
    A = connect(Ctx, p2),
    ?assertEqual(ok, kraken_client:retro_subscribe(A, H, Topics)),
    expect_in_order(A, Expected(Topics)),
    %% A client on a core, for the topics of the two other cores.
    Others = [T || T <- Topics, owner(Ctx, c3, T) =/= node_atom(Ctx, c3)],
    ?assertEqual(2, length(Others)),
    B = connect(Ctx, c3),
    ?assertEqual(ok, kraken_client:retro_subscribe(B, H, Others)),
    expect_in_order(B, Expected(Others)),
    %% From now on, live: each once more, exactly once.
    ok = kraken_client:publish(CorePub, [{Topics, <<"live">>}]),
    ?assertEqual(lists:sort([{<<"live">>, T} || T <- Topics]), receive_pairs(A, 3, 5000)),
    ?assertEqual(lists:sort([{<<"live">>, T} || T <- Others]), receive_pairs(B, 2, 5000)),
    %% register + subscribe, topics nobody on p1 holds: what was published
    %% after the register (nothing of an earlier second).
    R = [fresh_topic(Ctx, "rreg_", C) || C <- ?CORES],
    ok = kraken_client:publish(CorePub, [{R, <<"before register">>}]),
    _ = next_second(),
    E = connect(Ctx, p1),
    ok = kraken_client:register(E),
    ok = kraken_client:publish(CorePub, [{R, <<"after register">>}]),
    Local = connect(Ctx, p1),
    ok = kraken_client:publish(Local, [{tl(R), <<"local after register">>}]),
    timer:sleep(200),
    ?assertEqual(ok, kraken_client:subscribe(E, R)),
    ?assertEqual(lists:sort([{<<"after register">>, T} || T <- R] ++
                                [{<<"local after register">>, T} || T <- tl(R)]),
                 receive_pairs(E, 5, 5000)),
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(E)),
    %% NOT_FOUND when the owner's retention lost entries after the horizon
    %% (10,000 entries per shard: 10,001 published to the topic after H).
    [G1 | _] = G = [fresh_topic(Ctx, "rgone_", C) || C <- [c2]],
    HG = next_second(),
    Owner = connect(Ctx, c2),
    Many = [{G, integer_to_binary(I)} || I <- lists:seq(1, 10001)],
    ok = kraken_client:publish(Owner, Many),
    F = connect(Ctx, p2),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(F, HG, [G1])),
    %% The Redis port's KRAKEN.RETROSUBSCRIBE on a proxy takes the same path.
    RC = fresh_topic(Ctx, "rredis_", c2),
    HR = next_second(),
    ok = kraken_client:publish(CorePub, [{[RC], <<"for redis">>}]),
    timer:sleep(200),
    Rd = redis_connect(Ctx, p2),
    ok = gen_tcp:send(Rd, resp([<<"KRAKEN.RETROSUBSCRIBE">>, integer_to_binary(HR), RC])),
    ok = redis_expect(Rd, resp_push([<<"subscribe">>, RC], 1)),
    ok = redis_expect(Rd, resp_message(RC, <<"for redis">>)),
    gen_tcp:close(Rd),
    [kraken_client:disconnect(S) || S <- [A, B, CorePub, LocalPub, E, Local, Owner, F]],
    ok.

%% A client on p2 holds topic X upstream; another one subscribes to X from
%% a horizon before that, while a publisher on X's owner publishes
%% continuously: the entries arrive on p2's link live (queued for the first
%% client and, while it waits, for the second) and in the owner's answer.
%% The second client gets each entry since the horizon exactly once, in
%% publish order (one publisher, one core: one order).
retro_in_flight(Ctx) ->
    X = fresh_topic(Ctx, "rfl_", c2),
    Pub = connect(Ctx, c2),
    H = next_second(),
    ok = kraken_client:publish(Pub, [{[X], <<"0">>}]),
    _ = next_second(),
    Holder = connect(Ctx, p2), ok = kraken_client:subscribe(Holder, [X]),
    Self = self(),
    Loop = spawn_link(fun() -> publish_loop(Ctx, c2, X, 1, Self) end),
    timer:sleep(300),
    Late = connect(Ctx, p2),
    ?assertEqual(ok, kraken_client:retro_subscribe(Late, H, [X])),
    timer:sleep(300),
    Loop ! stop,
    N = receive {published, Last} -> Last after 10000 -> error(no_publisher) end,
    Want = [integer_to_binary(I) || I <- lists:seq(0, N)],
    Got = receive_payloads(Late, length(Want), 10000),
    ?assertEqual(Want, Got),
    [kraken_client:disconnect(S) || S <- [Pub, Holder, Late]],
    ok.

publish_loop(Ctx, Node, T, I, Parent) ->
    S = connect(Ctx, Node),
    publish_loop(S, T, I, Parent).

publish_loop(S, T, I, Parent) ->
    ok = kraken_client:publish(S, [{[T], integer_to_binary(I)}]),
    receive
        stop -> Parent ! {published, I}, kraken_client:disconnect(S)
    after 2 -> publish_loop(S, T, I + 1, Parent)
    end.

%% Payloads (single-topic entries) in arrival order, until N or the time is up.
receive_payloads(S, N, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    receive_payloads(S, N, Deadline, []).

receive_payloads(S, N, Deadline, Acc) ->
    Msgs = kraken_client:receive_messages(S),
    ?assert(is_list(Msgs)),
    Acc1 = Acc ++ [P || {_, P} <- Msgs],
    case length(Acc1) >= N orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> timer:sleep(200), Acc1 ++ [P || {_, P} <- kraken_client:receive_messages(S)];
        false -> timer:sleep(50), receive_payloads(S, N, Deadline, Acc1)
    end.

%% The (payload, topic) pairs S receives are exactly Expected, in that order
%% for each publisher (payloads name their publisher), nothing more.
expect_in_order(S, Expected) ->
    Msgs = receive_msgs(S, length(Expected), 5000),
    Got = [{P, T} || {Ts, P} <- Msgs, T <- Ts],
    ?assertEqual(lists:sort(Expected), lists:sort(Got)),
    Pubs = fun(L, First) -> [X || {<<F, _/binary>>, _} = X <- L, F =:= First] end,
    [?assertEqual([P || {P, T1} <- Pubs(Expected, Pre), T1 =:= T],
                  [P || {P, T1} <- Pubs(Got, Pre), T1 =:= T])
     || Pre <- [$c, $p], T <- lists:usort([T || {_, T} <- Expected])],
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(S)).

receive_msgs(S, NPairs, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    receive_msgs(S, NPairs, Deadline, []).

receive_msgs(S, NPairs, Deadline, Acc) ->
    Msgs = kraken_client:receive_messages(S),
    ?assert(is_list(Msgs)),
    Acc1 = Acc ++ Msgs,
    case length([x || {Ts, _} <- Acc1, _ <- Ts]) >= NPairs orelse
        erlang:monotonic_time(millisecond) > Deadline of
        true -> Acc1;
        false -> timer:sleep(50), receive_msgs(S, NPairs, Deadline, Acc1)
    end.

%% A topic owned by core C that no test used before.
fresh_topic(Ctx, Prefix, C) ->
    Want = node_atom(Ctx, C),
    hd([T || I <- lists:seq(1, 200),
             T <- [list_to_binary(Prefix ++ integer_to_list(I))],
             owner(Ctx, p1, T) =:= Want]).

%% Waits for the next second to begin (plus a little); returns the second
%% just ended, a horizon before everything published from now on.
next_second() ->
    Now = erlang:system_time(millisecond),
    timer:sleep(1000 - Now rem 1000 + 20),
    Now div 1000.

pick(Topics, N) ->
    lists:usort([lists:nth(rand:uniform(length(Topics)), Topics) || _ <- lists:seq(1, N)]).

payload({Node, I}, K) ->
    iolist_to_binary(io_lib:format("~s/~b/~b", [Node, I, K])).

%% Polls until N (payload, topic) pairs arrived or the time is up; sorted.
receive_pairs(S, N, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    receive_pairs(S, N, Deadline, []).

receive_pairs(S, N, Deadline, Acc) ->
    Msgs = kraken_client:receive_messages(S),
    ?assert(is_list(Msgs)),
    Acc1 = [{P, T} || {Ts, P} <- Msgs, T <- Ts] ++ Acc,
    case length(Acc1) >= N orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> lists:sort(Acc1);
        false -> timer:sleep(50), receive_pairs(S, N, Deadline, Acc1)
    end.

core_killed(Ctx = #{os_pids := OsPids, tmp := Tmp}) ->
    Victim = node_atom(Ctx, c3),
    Survivor = node_atom(Ctx, c1),
    Candidates = [list_to_binary("kill_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    [Kept | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Survivor],
    [Lost | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Victim],
    X = connect(Ctx, p1), ok = kraken_client:subscribe(X, [Kept]),     % stays
    Y = connect(Ctx, p1), ok = kraken_client:subscribe(Y, [Lost]),     % disconnected
    Z = connect(Ctx, p2), ok = kraken_client:subscribe(Z, [Kept, Lost]), % disconnected
    W = connect(Ctx, c1), ok = kraken_client:subscribe(W, [Lost]),     % disconnected (core)
    %% A pattern matches every core's topics: its holder is disconnected too.
    RP = redis_connect(Ctx, p2),
    ok = gen_tcp:send(RP, resp([<<"PSUBSCRIBE">>, <<"kill_*">>])),
    ok = redis_expect(RP, resp_push([<<"psubscribe">>, <<"kill_*">>], 1)),
    %% So is the holder of a shard channel it owns (docs/cluster.md, "Shard
    %% channels"); one of the survivor's stays.
    RS = redis_connect(Ctx, p1),
    ok = gen_tcp:send(RS, resp([<<"SSUBSCRIBE">>, Lost])),
    ok = redis_expect(RS, resp_push([<<"ssubscribe">>, Lost], 1)),
    RK = redis_connect(Ctx, p1),
    ok = gen_tcp:send(RK, resp([<<"SSUBSCRIBE">>, Kept])),
    ok = redis_expect(RK, resp_push([<<"ssubscribe">>, Kept], 1)),
    Pub = connect(Ctx, p2),
    timer:sleep(300),
    ok = kraken_client:publish(Pub, [{[Kept, Lost], <<"before">>}]),
    ok = wait_until(fun() -> kraken_client:receive_messages(X) =/= [] end, 5000),
    Doomed = fun() -> [stat(Ctx, N, "disconnects_cluster") || N <- [p1, p2, c1]] end,
    [D1, D2, DC] = Doomed(),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -9 " ++ integer_to_list(maps:get(c3, OsPids))),
    [closed_within(S, T0, 3000) || S <- [Y, Z, W, RP, RS]],
    %% Counted by cause (stats, /metrics kraken_disconnects_total{cause="cluster"}):
    %% Y and RS on p1, Z and RP on p2, W on c1.
    ?assertEqual([D1 + 2, D2 + 2, DC + 1], Doomed()),
    ?assertEqual({error, timeout}, gen_tcp:recv(RK, 0, 100)),   % still there
    %% X was not disturbed: it still gets what is published to its topic.
    ok = kraken_client:publish(Pub, [{[Kept], <<"after">>}]),
    ok = wait_until(fun() -> lists:member({[Kept], <<"after">>},
                                          kraken_client:receive_messages(X)) end, 5000),
    %% The log says why, naming the client's topic and the core.
    Log = filename:join(Tmp, node_name(Ctx, p1) ++ ".console.log"),
    ok = wait_until(fun() ->
                            {ok, Text} = file:read_file(Log),
                            re:run(Text, "holds topic " ++ binary_to_list(Lost) ++
                                       " owned by core " ++ atom_to_list(Victim),
                                   [{capture, none}]) =:= match
                    end, 3000),
    Log2 = filename:join(Tmp, node_name(Ctx, p2) ++ ".console.log"),
    ok = wait_until(fun() ->
                            {ok, Text} = file:read_file(Log2),
                            re:run(Text, "holds pattern kill_\\*, which matches topics of core " ++
                                       atom_to_list(Victim), [{capture, none}]) =:= match
                    end, 3000),
    %% Its topics moved: the lost topic works again, through the survivors.
    ok = wait_until(fun() -> links_up(Ctx, p1, [c1, c2]) andalso links_up(Ctx, p2, [c1, c2])
                    end, 5000),
    ?assertNotEqual(Victim, owner(Ctx, p1, Lost)),
    %% Once the view no longer has it (until the others' heartbeats stop
    %% listing it, a node may refuse its topics: docs/cluster.md, "Partitions").
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], [c1, c2]) end, 5000),
    V = connect(Ctx, p1), ok = kraken_client:subscribe(V, [Lost]),
    RV = redis_connect(Ctx, p1),
    ok = gen_tcp:send(RV, resp([<<"PSUBSCRIBE">>, <<"kill_*">>])),
    ok = redis_expect(RV, resp_push([<<"psubscribe">>, <<"kill_*">>], 1)),
    timer:sleep(300),
    ok = kraken_client:publish(Pub, [{[Lost], <<"moved">>}]),
    ok = wait_until(fun() -> kraken_client:receive_messages(V) =:= [{[Lost], <<"moved">>}] end,
                    5000),
    ?assertEqual([{<<"moved">>, Lost}], redis_pmessages(RV, 1)),
    gen_tcp:close(RV),
    RKP = redis_connect(Ctx, p2),
    ok = gen_tcp:send(RKP, resp([<<"SPUBLISH">>, Kept, <<"kept">>])),
    {match, _} = re:run(redis_line(RKP), "^:[0-9]+\r\n$"),
    ?assertEqual([{<<"kept">>, Kept}], redis_smessages(RK, 1)),
    [gen_tcp:close(R) || R <- [RK, RKP]],
    [kraken_client:disconnect(S) || S <- [X, V, Pub]],
    ok.

%% A figure of `bin/kraken stats' on node N.
stat(Ctx, N, Name) ->
    {0, St} = script(Ctx, N, ["stats"]),
    {match, [V]} = re:run(St, "(?m)^" ++ Name ++ "\\s+(\\d+)$", [{capture, all_but_first, list}]),
    list_to_integer(V).

%% Everything S receives until the server closes it, within Ms of T0.
bytes_until_closed(S, T0, Ms) ->
    bytes_until_closed(S, T0 + Ms, T0, <<>>).

bytes_until_closed(S, Deadline, T0, Acc) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    Left > 0 orelse error({not_closed_within, Deadline - T0, Acc}),
    case gen_tcp:recv(S, 0, Left) of
        {ok, B} -> bytes_until_closed(S, Deadline, T0, <<Acc/binary, B/binary>>);
        {error, closed} -> Acc;
        {error, timeout} -> error({not_closed_within, Deadline - T0, Acc})
    end.

%% Clients on p1 hold two topics of c1 while a client on c1 publishes
%% continuously, each payload `<n>:<second>' (the publisher's clock just
%% before publishing: never after the entry's own second).  p1 (VM and
%% engine) is killed with kill -9; its clients read what they had, then
%% reconnect to p2 with retro_subscribe from the second of the last message
%% they saw (horizon: that second - 1, retro_subscribe takes entries
%% strictly after it) and miss nothing; entries they see twice are only
%% those of that second (the single-node contract: a retroactive delivery
%% may repeat an entry received live).  One publisher and one core: one
%% order, so "after the last message seen" is well defined.
proxy_killed(Ctx = #{os_pids := OsPids}) ->
    Topics = [K1, K2] = [fresh_topic(Ctx, "pk_", c1), fresh_topic(Ctx, "pk2_", c1)],
    Subs = [{[K1, K2], connect(Ctx, p1)}, {[K1], connect(Ctx, p1)}],
    [ok = kraken_client:subscribe(S, Ts) || {Ts, S} <- Subs],
    Self = self(),
    Loop = spawn_link(fun() -> stamped_loop(connect(Ctx, c1), Topics, 1, Self) end),
    Readers = [{Ts, spawn_link(fun() -> Self ! {seen, self(), read_until_closed(S, [])} end)}
               || {Ts, S} <- Subs],
    timer:sleep(500),
    _ = os:cmd("kill -9 -" ++ integer_to_list(maps:get(p1, OsPids))),
    Before = [{Ts, receive {seen, R, Seen} -> Seen after 10000 -> error(reader) end}
              || {Ts, R} <- Readers],
    timer:sleep(500),
    After = [begin
                 [_ | _] = Seen,
                 Last = stamp(lists:last(Seen)),
                 S = connect(Ctx, p2),
                 ?assertEqual(ok, kraken_client:retro_subscribe(S, Last - 1, Ts)),
                 {Ts, Seen, Last, S}
             end || {Ts, Seen} <- Before],
    timer:sleep(500),
    Loop ! stop,
    N = receive {published, LastN} -> LastN after 10000 -> error(no_publisher) end,
    [begin
         Again = receive_until(S, N, erlang:monotonic_time(millisecond) + 10000, []),
         timer:sleep(200),
         [] = kraken_client:receive_messages(S),
         %% Every message lists exactly the client's topics (one core).
         [?assertEqual(lists:sort(Ts), lists:sort(MTs)) || {MTs, _} <- Seen ++ Again],
         Second = [P || {_, P} <- Again],
         ?assertEqual(Second, lists:usort(fun(A, B) -> seqno(A) =< seqno(B) end, Second)),
         ?assertEqual(lists:seq(1, N),
                      lists:usort([seqno(P) || {_, P} <- Seen] ++ [seqno(P) || P <- Second])),
         Twice = [P || {_, P} <- Seen, lists:member(P, Second)],
         ?assertEqual([], [P || P <- Twice, stamp({x, P}) < Last - 1]),
         kraken_client:disconnect(S)
     end || {Ts, Seen, Last, S} <- After],
    ok.

stamped_loop(S, Topics, I, Parent) ->
    P = iolist_to_binary([integer_to_list(I), ":",
                          integer_to_list(erlang:system_time(second))]),
    ok = kraken_client:publish(S, [{Topics, P}]),
    receive
        stop -> Parent ! {published, I}, kraken_client:disconnect(S)
    after 2 -> stamped_loop(S, Topics, I + 1, Parent)
    end.

seqno(P) -> binary_to_integer(hd(binary:split(P, <<":">>))).

%% Messages until the one numbered N arrived (or the deadline passed).
receive_until(S, N, Deadline, Acc) ->
    Msgs = kraken_client:receive_messages(S),
    ?assert(is_list(Msgs)),
    Acc1 = Acc ++ Msgs,
    case lists:any(fun({_, P}) -> seqno(P) =:= N end, Acc1) orelse
        erlang:monotonic_time(millisecond) > Deadline of
        true -> Acc1;
        false -> timer:sleep(50), receive_until(S, N, Deadline, Acc1)
    end.

stamp({_, P}) -> binary_to_integer(lists:last(binary:split(P, <<":">>))).

%% Every message S receives until its server goes away, in order.
read_until_closed(S, Acc) ->
    case kraken_client:receive_messages(S) of
        L when is_list(L) -> timer:sleep(20), read_until_closed(S, Acc ++ L);
        {error, _} -> Acc
    end.

%% The server closes S (after its error line) within Ms of T0.
closed_within(S, T0, Ms) ->
    ok = inet:setopts(S, [{packet, raw}]),
    closed_loop(S, T0, T0 + Ms).

closed_loop(S, T0, Deadline) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    ?assert(Left > 0),
    case gen_tcp:recv(S, 0, Left) of
        {ok, _ErrorLine} -> closed_loop(S, T0, Deadline);
        {error, closed} -> ok;
        {error, timeout} -> error({not_closed_within, Deadline - T0})
    end.

core_hung(Ctx = #{os_pids := OsPids}) ->
    Victim = node_atom(Ctx, c2),
    Survivor = node_atom(Ctx, c1),
    Candidates = [list_to_binary("hang_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    [Kept | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Survivor],
    [Lost, Probe | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Victim],
    X = connect(Ctx, p1), ok = kraken_client:subscribe(X, [Kept]),
    Y = connect(Ctx, p2), ok = kraken_client:subscribe(Y, [Lost]),
    Pub = connect(Ctx, p1),
    %% A client of the victim itself, which publishes to Lost the moment it
    %% resumes (the request waits in its socket); another one that holds Lost.
    VP = connect(Ctx, c2),
    VS = connect(Ctx, c2), ok = kraken_client:subscribe(VS, [Lost]),
    timer:sleep(300),
    %% The node's process group: the Erlang VM and its engine.
    Group = "-" ++ integer_to_list(maps:get(c2, OsPids)),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -STOP " ++ Group),
    Self = self(),
    try
        closed_within(Y, T0, 3000),
        ok = kraken_client:publish(Pub, [{[Kept], <<"during">>}]),
        ok = wait_until(fun() -> kraken_client:receive_messages(X) =:= [{[Kept], <<"during">>}]
                        end, 5000),
        %% Every node drops it (each at its own next tick after the deadline).
        ok = wait_until(fun() -> owner(Ctx, p1, Lost) =:= Survivor andalso
                                     owner(Ctx, p2, Lost) =:= Survivor end, 3000),
        %% ... and p1 takes its topics (until every node's heartbeats stop
        %% listing it, a node refuses them for a moment: docs/cluster.md,
        %% "Partitions"; seen once, the publish below refused): probes to
        %% another of its topics, each on a connection of its own (a
        %% refused publish closes it).
        ok = wait_until(fun() ->
                                P = connect(Ctx, p1),
                                R = kraken_client:publish(P, [{[Probe], <<"probe">>}]),
                                catch kraken_client:disconnect(P),
                                R =:= ok
                        end, 3000),
        %% A subscriber of Lost now (at its new owner).
        Z = subscribed(Ctx, p2, Lost),
        put(z, Z),
        ok = kraken_client:publish(Pub, [{[Lost], <<"moved">>}]),
        ok = wait_until(fun() -> kraken_client:receive_messages(Z) =:= [{[Lost], <<"moved">>}]
                        end, 5000),
        spawn(fun() -> Self ! {vp, kraken_client:publish(VP, [{[Lost], <<"resumed">>}])} end),
        timer:sleep(200)
    after
        _ = os:cmd("kill -CONT " ++ Group)
    end,
    VPResult = receive {vp, R} -> R after 10000 -> error(vp_timeout) end,
    Z1 = get(z),
    V = serves_again(Ctx, Victim, Lost, Pub),
    ZGot = kraken_client:receive_messages(Z1),
    %% Published (and then its new owner's subscriber has it), or refused.
    case VPResult of
        ok -> ?assertMatch([{[Lost], <<"resumed">>} | _], ZGot);
        _ -> ?assertEqual({error, {server_error, <<"cluster core unavailable">>}}, VPResult)
    end,
    %% The victim's own subscriber of Lost: it got what was published at
    %% Lost's new owner while it was stopped, or it was disconnected.
    VSGot = (catch kraken_client:receive_messages(VS)),
    case VSGot of
        L when is_list(L) -> ?assertMatch([{[Lost], <<"moved">>} | _], L);
        _ -> ok
    end,
    [kraken_client:disconnect(S) || S <- [X, V, Pub, Z1]],
    ok.

%% After a hung core resumed: live again everywhere, its topic Lost is its
%% own again (moved back once every node sees it), and served: a new
%% subscriber on p2 gets what Pub publishes.  Returns that subscriber.
serves_again(Ctx, Victim, Lost, Pub) ->
    ok = wait_until(fun() -> links_up(Ctx, p1, [c1, c2]) andalso links_up(Ctx, p2, [c1, c2])
                    end, 10000),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], [c1, c2]) end, 10000),
    ?assertEqual(Victim, owner(Ctx, p2, Lost)),
    V = connect(Ctx, p2), ok = kraken_client:subscribe(V, [Lost]),
    timer:sleep(300),
    ok = kraken_client:publish(Pub, [{[Lost], <<"back">>}]),
    ok = wait_until(fun() -> kraken_client:receive_messages(V) =:= [{[Lost], <<"back">>}] end,
                    5000),
    V.

engine_hung(Ctx) ->
    Victim = node_atom(Ctx, c2),
    Survivor = node_atom(Ctx, c1),
    ok = wait_until(fun() -> links_up(Ctx, p1, [c1, c2]) andalso links_up(Ctx, p2, [c1, c2])
                    end, 10000),
    ok = wait_until(fun() -> settled(Ctx, [c1, c2, p1, p2], [c1, c2]) end, 10000),
    Candidates = [list_to_binary("ehang_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    [Kept | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Survivor],
    [Lost | _] = [T || T <- Candidates, owner(Ctx, p1, T) =:= Victim],
    X = connect(Ctx, p1), ok = kraken_client:subscribe(X, [Kept]),
    Y = connect(Ctx, p2), ok = kraken_client:subscribe(Y, [Lost]),
    Pub = connect(Ctx, p1),
    timer:sleep(300),
    %% A fresh topic of the victim, subscribed while its engine is stopped:
    %% the subscribe waits for a confirmation that never comes.
    [Fresh | _] = [T || T <- Candidates -- [Lost], owner(Ctx, p1, T) =:= Victim],
    Q = connect(Ctx, p1),
    %% Publishers of its topic on p1: Kraken, Redis, Kraken noreply.
    {ok, KP} = gen_tcp:connect({127, 0, 0, 1}, maps:get(p1, maps:get(ports, Ctx)),
                               [binary, {active, false}]),
    RP = redis_connect(Ctx, p1),
    {ok, NP} = gen_tcp:connect({127, 0, 0, 1}, maps:get(p1, maps:get(ports, Ctx)),
                               [binary, {active, false}]),
    {ok, Block} = kraken_client:serialize_entries([{[Lost], <<"maybe">>}]),
    Pub1 = [<<"set publish 0 0 ">>, integer_to_binary(iolist_size(Block))],
    EngineOsPid = integer_to_list(rpc(Ctx, c2, kraken_engine, os_pid, [])),
    T0 = erlang:monotonic_time(millisecond),
    _ = os:cmd("kill -STOP " ++ EngineOsPid),
    try
        %% Forwarded on the link while it still counts as up: held, then the
        %% error (never STORED), then the close; the noreply one is named.
        ok = gen_tcp:send(KP, [Pub1, <<"\r\n">>, Block, <<"\r\n">>]),
        ok = gen_tcp:send(RP, resp([<<"PUBLISH">>, Lost, <<"maybe">>])),
        ok = gen_tcp:send(NP, [Pub1, <<" noreply\r\n">>, Block, <<"\r\n">>]),
        %% Not STORED: the link is found broken while it waits, and it gets
        %% the error line of a holder of the lost core's topics, then the close.
        ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                     kraken_client:subscribe(Q, [Fresh])),
        closed_within(Q, T0, 3000),
        ?assertEqual(<<"SERVER_ERROR cluster core unavailable\r\n">>,
                     bytes_until_closed(KP, T0, 3000)),
        ?assertEqual(<<"-ERR cluster core unavailable: not published\r\n">>,
                     bytes_until_closed(RP, T0, 3000)),
        Log = filename:join(maps:get(tmp, Ctx), node_name(Ctx, p1) ++ ".console.log"),
        ok = wait_until(fun() ->
                                {ok, Text} = file:read_file(Log),
                                re:run(Text, "core " ++ atom_to_list(Victim) ++ " was lost before "
                                       "confirming 1 noreply publish request\\(s\\) forwarded to "
                                       "it \\(the last from client", [{capture, none}]) =:= match
                        end, 3000),
        closed_within(Y, T0, 3000),
        ok = kraken_client:publish(Pub, [{[Kept], <<"during">>}]),
        ok = wait_until(fun() -> kraken_client:receive_messages(X) =:= [{[Kept], <<"during">>}]
                        end, 5000),
        %% Its node stops heartbeating: the others move its topics.
        ok = wait_until(fun() -> owner(Ctx, p1, Lost) =:= Survivor andalso
                                     owner(Ctx, p2, Lost) =:= Survivor end, 5000)
    after
        _ = os:cmd("kill -CONT " ++ EngineOsPid)
    end,
    V = serves_again(Ctx, Victim, Lost, Pub),
    [kraken_client:disconnect(S) || S <- [X, V, Pub, NP]],
    ok.

%%% Static upstreams: a proxy in front of Kraken nodes outside the Erlang
%%% cluster (standalone engines), one of which refuses push mode like the
%%% original Kraken (a relay answers ERROR to `set push'): that one is
%%% polled every upstream_poll_ms.

upstreams_test_() ->
    {setup, fun upstreams_setup/0, fun upstreams_cleanup/1,
     fun(Ctx) ->
             [{timeout, 60, {"a proxy with static upstreams: push to one, polling the "
                             "other; each (entry, topic) once, never back to its publisher",
                             fun() -> upstreams(Ctx) end}},
              {timeout, 60, {"forwarded batches stay under the owner's max_request_bytes",
                             fun() -> batch_under_limit(Ctx) end}},
              {timeout, 60, {"retro_subscribe through a static upstream in push mode: asked "
                             "with link_retro; NOT_FOUND for a polled one",
                             fun() -> upstream_retro(Ctx) end}}]
     end}.

upstreams_setup() ->
    Ctx0 = #{tmp := _} = base_ctx("kup"),
    Engine = engine_path(),
    %% max_request_bytes 65536 on the proxy and on U1 (batch_under_limit)
    {U1, U1Port} = standalone(Engine, ["--max_request_bytes", "65536"]),
    {U2, U2Port} = standalone(Engine),
    {Relay, OPort} = refusing_relay(U2Port),
    Ctx = Ctx0#{ports => #{p3 => free_port()}, u1 => U1, u2 => U2, relay => Relay,
                u1_port => U1Port, u2_port => U2Port, o_port => OPort},
    Ups = io_lib:format("[\"127.0.0.1:~b\", \"127.0.0.1:~b\"]", [U1Port, OPort]),
    {0, Out} = script(Ctx, p3, ["start", "-kraken", "tcp_server_port",
                                integer_to_list(maps:get(p3, maps:get(ports, Ctx))),
                                "-kraken", "listen_ip", "\"127.0.0.1\"",
                                "-kraken", "role", "proxy",
                                "-kraken", "upstreams", lists:flatten(Ups),
                                "-kraken", "upstream_poll_ms", "100",
                                "-kraken", "max_request_bytes", "65536"] ++ engine_args()),
    {match, [P]} = re:run(Out, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
    Ctx#{os_pids => #{p3 => list_to_integer(P)}}.

upstreams_cleanup(Ctx = #{u1 := U1, u2 := U2, relay := Relay, os_pids := OsPids,
                           tmp := Tmp}) ->
    _ = script(Ctx, p3, ["stop"]),
    sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- maps:values(OsPids)],
    exit(Relay, kill),
    [begin
         {os_pid, OsPid} = erlang:port_info(U, os_pid),
         _ = os:cmd("kill " ++ integer_to_list(OsPid))
     end || U <- [U1, U2]],
    base_cleanup(Ctx).

upstreams(Ctx = #{u1_port := U1Port, u2_port := U2Port, o_port := OPort}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    OName = list_to_binary("127.0.0.1:" ++ integer_to_list(OPort)),
    ok = wait_until(fun() ->
                            case rpc(Ctx, p3, kraken_engine, call, [cluster_status]) of
                                L when is_list(L) ->
                                    lists:sort([{N, S} || {N, S, _, _, _, _, _, _, _} <- L]) =:=
                                        lists:sort([{U1Name, up}, {OName, polling}]);
                                _ -> false
                            end
                    end, 15000),
    Candidates = [list_to_binary("up_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    [T1 | _] = [T || T <- Candidates, rpc(Ctx, p3, kraken_engine, call,
                                          [{cluster_owner, T}]) =:= U1Name],
    [T2 | _] = [T || T <- Candidates, rpc(Ctx, p3, kraken_engine, call,
                                          [{cluster_owner, T}]) =:= OName],
    A = connect(Ctx, p3), ok = kraken_client:subscribe(A, [T1, T2]),
    {ok, B} = kraken_client:connect({127, 0, 0, 1}, U1Port),
    ok = kraken_client:subscribe(B, [T1]),
    {ok, C} = kraken_client:connect({127, 0, 0, 1}, U2Port),
    ok = kraken_client:subscribe(C, [T2]),
    ok = wait_until(fun() -> upstream_topics(Ctx, p3) =:= 2 end, 5000),
    timer:sleep(300),
    ok = kraken_client:publish(B, [{[T1], <<"from U1">>}]),
    ok = kraken_client:publish(C, [{[T2], <<"from U2">>}]),
    ok = kraken_client:publish(A, [{[T1, T2], <<"from the proxy">>}]),
    Got = fun(S, N) -> receive_pairs(S, N, 5000) end,
    ?assertEqual([{<<"from U1">>, T1}, {<<"from U2">>, T2}], Got(A, 2)),
    ?assertEqual([{<<"from the proxy">>, T1}], Got(B, 1)),
    ?assertEqual([{<<"from the proxy">>, T2}], Got(C, 1)),
    timer:sleep(300),
    [?assertEqual([], kraken_client:receive_messages(S)) || S <- [A, B, C]],
    {0, Out} = script(Ctx, p3, ["cluster_status"]),
    ?assertMatch({match, _}, re:run(Out, binary_to_list(U1Name) ++ "\\s+upstream\\s+\\S+\\s+static\\s+up\\s+1")),
    ?assertMatch({match, _}, re:run(Out, binary_to_list(OName) ++ "\\s+upstream\\s+\\S+\\s+static\\s+polling\\s+1")),
    [kraken_client:disconnect(S) || S <- [A, B, C]],
    ok.

%% Two 40 KB entries pipelined in one write to the proxy, for a topic of
%% U1: each fits max_request_bytes (64 KiB on both), the two together do
%% not, so the proxy must forward them in two requests (one request of both
%% was refused by U1, and the link closed: entries lost after STORED).
batch_under_limit(Ctx = #{u1_port := U1Port}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    [T | _] = [T || I <- lists:seq(1, 60),
                    T <- [list_to_binary("big_" ++ integer_to_list(I))],
                    rpc(Ctx, p3, kraken_engine, call, [{cluster_owner, T}]) =:= U1Name],
    {ok, B} = kraken_client:connect({127, 0, 0, 1}, U1Port),
    ok = kraken_client:subscribe(B, [T]),
    Payloads = [binary:copy(<<C>>, 40000) || C <- "xy"],
    Req = fun(P) ->
                  Block = [<<"MESSAGE ">>, T, <<" 40000\r\n">>, P, <<"\r\n">>],
                  [<<"set publish 0 0 ">>, integer_to_list(iolist_size(Block)), <<"\r\n">>,
                   Block, <<"\r\n">>]
          end,
    {ok, A} = gen_tcp:connect({127, 0, 0, 1}, maps:get(p3, maps:get(ports, Ctx)),
                              [binary, {active, false}]),
    ok = gen_tcp:send(A, [Req(P) || P <- Payloads]),
    ?assertEqual({ok, <<"STORED\r\nSTORED\r\n">>}, gen_tcp:recv(A, 16, 5000)),
    ?assertEqual([{P, T} || P <- Payloads], receive_pairs(B, 2, 5000)),
    gen_tcp:close(A),
    kraken_client:disconnect(B),
    ok.

%% A static upstream that takes push mode is one of our engines: the proxy
%% asks it with link_retro (its link said `set child'), as it asks a core.
%% Entries published after the horizon on U1 itself and on the proxy (which
%% U1 leaves out of its answer: the proxy's retention has them), for a topic
%% the proxy never held: each once, in each publisher's order.  A polled
%% upstream (the original Kraken; here the relay) cannot be asked:
%% NOT_FOUND.  Before static upstreams answered link_retro, both were
%% NOT_FOUND.
upstream_retro(Ctx = #{u1_port := U1Port, o_port := OPort}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    OName = list_to_binary("127.0.0.1:" ++ integer_to_list(OPort)),
    Cands = [list_to_binary("ur_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    Owner = fun(T) -> rpc(Ctx, p3, kraken_engine, call, [{cluster_owner, T}]) end,
    [T | _] = [X || X <- Cands, Owner(X) =:= U1Name],
    [TO | _] = [X || X <- Cands, Owner(X) =:= OName],
    {ok, U} = kraken_client:connect({127, 0, 0, 1}, U1Port),
    Local = connect(Ctx, p3),
    H = next_second(),
    Entries = [{U, <<"c1">>}, {Local, <<"p1">>}, {U, <<"c2">>}, {Local, <<"p2">>},
               {U, <<"c3">>}],
    [ok = kraken_client:publish(P, [{[T], M}]) || {P, M} <- Entries],
    timer:sleep(200),
    A = connect(Ctx, p3),
    ?assertEqual(ok, kraken_client:retro_subscribe(A, H, [T])),
    expect_in_order(A, [{M, T} || {_, M} <- Entries]),
    ok = kraken_client:publish(U, [{[T], <<"live">>}]),
    ?assertEqual([{<<"live">>, T}], receive_pairs(A, 1, 5000)),
    B = connect(Ctx, p3),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(B, H, [TO])),
    [kraken_client:disconnect(S) || S <- [U, Local, A, B]],
    ok.

base_ctx(Tag) ->
    Tmp = filename:join(["/tmp", "kraken_" ++ Tag ++ "_test_" ++ os:getpid()]),
    ok = filelib:ensure_dir(filename:join(Tmp, "x")),
    _ = os:cmd("epmd -daemon"),
    %% epmd -daemon returns before epmd listens: distribution would fail to
    %% start (nodistribution) on a machine where no epmd ran before.
    ok = wait_until(fun() -> element(1, net_adm:names()) =:= ok end, 5000),
    Distributed = case node() of
                      nonode@nohost ->
                          {ok, _} = net_kernel:start([list_to_atom("kraken_" ++ Tag ++ "_test_" ++
                                                                       os:getpid()),
                                                      shortnames]),
                          true;
                      _ ->
                          false
                  end,
    [_, Host] = string:split(atom_to_list(node()), "@"),
    #{tmp => Tmp, script => filename:absname("bin/kraken"),
      ebin => filename:dirname(code:which(kraken)), host => Host,
      prefix => Tag ++ os:getpid() ++ "_", distributed => Distributed}.

base_cleanup(#{tmp := Tmp, distributed := Distributed}) ->
    Distributed andalso net_kernel:stop(),
    _ = os:cmd("rm -rf '" ++ Tmp ++ "'"),
    ok.

engine_args() ->
    case os:getenv("KRAKEN_ENGINE") of
        false -> [];
        "" -> [];
        Path -> ["-kraken", "engine_executable", "\"" ++ Path ++ "\""]
    end.

engine_path() ->
    case os:getenv("KRAKEN_ENGINE") of
        P when P =:= false; P =:= "" ->
            {ok, Path} = kraken_engine:executable([]),
            Path;
        Path ->
            Path
    end.

%% A standalone engine (no Erlang) on a free port.
standalone(Engine) ->
    standalone(Engine, []).

standalone(Engine, Options) ->
    Port = open_port({spawn_executable, Engine},
                     [{args, ["--standalone", "--tcp_server_port", "0",
                              "--listen_ip", "127.0.0.1"] ++ Options}, {line, 256}, binary]),
    receive
        {Port, {data, {eol, <<"listening ", N/binary>>}}} -> {Port, binary_to_integer(N)}
    after 10000 -> error(standalone_timeout)
    end.

%% A relay in front of a Kraken port that refuses push mode as the original
%% Kraken would (ERROR, then close): the proxy must then poll through it.
refusing_relay(UpstreamPort) ->
    Self = self(),
    Pid = spawn(fun() ->
                        {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}},
                                                     {active, false}, {reuseaddr, true}]),
                        {ok, P} = inet:port(L),
                        Self ! {relay_port, P},
                        relay_accept(L, UpstreamPort)
                end),
    receive {relay_port, P} -> {Pid, P} after 5000 -> error(relay) end.

relay_accept(L, UpstreamPort) ->
    {ok, S} = gen_tcp:accept(L),
    Pid = spawn(fun() ->
                        receive go -> ok end,
                        {ok, U} = gen_tcp:connect({127, 0, 0, 1}, UpstreamPort,
                                                  [binary, {active, true}]),
                        ok = inet:setopts(S, [{active, true}]),
                        relay_loop(S, U)
                end),
    ok = gen_tcp:controlling_process(S, Pid),
    Pid ! go,
    relay_accept(L, UpstreamPort).

relay_loop(S, U) ->
    receive
        {tcp, S, Data} ->
            case binary:match(Data, [<<"set push">>, <<"version">>]) of
                nomatch ->
                    ok = gen_tcp:send(U, Data),
                    relay_loop(S, U);
                _ ->
                    _ = gen_tcp:send(S, <<"ERROR\r\n">>),
                    gen_tcp:close(S),
                    gen_tcp:close(U)
            end;
        {tcp, U, Data} ->
            ok = gen_tcp:send(S, Data),
            relay_loop(S, U);
        {tcp_closed, _} ->
            gen_tcp:close(S),
            gen_tcp:close(U)
    end.

%% With the sanitizer build (KRAKEN_ENGINE), an engine's report goes to its
%% node's console log; print any, and keep a copy for the developer.
sanitizer_reports(Tmp) ->
    Logs = filelib:wildcard(filename:join(Tmp, "*.console.log")),
    Bad = [L || L <- Logs,
                {ok, Text} <- [file:read_file(L)],
                binary:match(Text, [<<"Sanitizer">>, <<"runtime error:">>]) =/= nomatch],
    [begin
         Keep = filename:join("/tmp", filename:basename(L) ++ ".sanitizer"),
         {ok, _} = file:copy(L, Keep),
         io:format(user, "~n*** sanitizer report in ~s (kept in ~s)~n", [L, Keep])
     end || L <- Bad],
    Bad =:= [] orelse error({sanitizer_reports, Bad}),
    ok.
