%% @doc Moves of topics (docs/cluster.md, "Moves"), run in the fixture of
%% kraken_cluster_tests (3 cores c1-c3, 2 proxies p1-p2): while a client on
%% every node publishes continuously to topics spread over the cores (and
%% subscribes to all of them),
%%
%%   - join: a 4th core, c4, starts and joins: its share of the topics moves
%%     to it;
%%   - drain: `bin/kraken drain' on c2 moves all its topics away, and
%%     `bin/kraken undrain' takes it back;
%%   - stop: `bin/kraken stop' of c4 drains it first, then stops it;
%%
%% and after each: every client got every (entry, topic) of the others
%% exactly once, never its own, and none was disconnected; and so did a
%% Redis client with a pattern matching every topic (PSUBSCRIBE, on p1 and
%% on c2; docs/cluster.md, "Patterns"), of every client (the Kraken clients
%% of p1 and c2 hold a quarter of the topics: the rest reach those nodes
%% through the patterns).
-module(kraken_cluster_moves).

-include_lib("eunit/include/eunit.hrl").

-export([join/1, drain/1, stop/1]).

-define(T, kraken_cluster_tests).
-define(NODES, [c1, c2, c3, p1, p2]).   % a client on each
-define(NTOPICS, 40).
-define(BEFORE, [c1, c2, c3, c4]).   % the owners before and after the drain of c2
-define(AFTER, [c1, c3, c4]).
-define(PATTERN_NODES, [p1, c2]).   % a Redis pattern subscriber on each
%% A Redis client publishing there too: c2 is drained, when it is for a
%% while the other owner of the topics it had, still subscribed there by
%% every holder (docs/cluster.md, "Moves").
-define(REDIS_PUBLISHER, c2).
%% Redis shard channels (docs/cluster.md, "Shard channels"): a subscriber
%% of every topic as a shard channel on p2, a publisher on c3 (drained
%% and stopped: c2 and c4).
-define(SHARD_SUBSCRIBER, p2).
-define(SHARD_PUBLISHER, c3).

join(Ctx) ->
    ok = ?T:wait_until(fun() -> ?T:settled(Ctx, ?NODES, [c1, c2, c3]) end, 10000),
    C4 = ?T:node_atom(Ctx, c4),
    Retro = join_retro_start(Ctx),
    check(Ctx, fun() ->
                       [{c4, _}] = ?T:start_nodes(Ctx, [c4]),
                       ok = ?T:wait_until(fun() ->
                                                  ?T:settled(Ctx, [c4 | ?NODES],
                                                             [c1, c2, c3, c4])
                                          end, 20000)
               end),
    join_retro_check(Ctx, Retro),
    %% Some of the topics did move to it.
    ?assert(lists:member(C4, [?T:owner(Ctx, p1, T) || T <- topics()])).

drain(Ctx) ->
    All = [c4 | ?NODES],
    C2 = ?T:node_atom(Ctx, c2),
    ?assert(lists:member(C2, [?T:owner(Ctx, p1, T) || T <- topics()])),
    Retro = retro_start(Ctx),
    check(Ctx, fun() ->
                       Prober = retro_probe_start(Ctx, Retro),
                       {0, Out} = ?T:script(Ctx, c2, ["drain"]),
                       ?assertMatch({match, _}, re:run(Out, "is drained")),
                       %% Drained: nobody sees it own anything.
                       ok = ?T:wait_until(fun() -> ?T:settled(Ctx, All, [c1, c3, c4]) end, 2000),
                       put(retro_probes, retro_probe_stop(Prober))
               end),
    retro_check(Ctx, Retro, get(retro_probes)),
    ?assertNot(lists:member(C2, [?T:owner(Ctx, N, T) || T <- topics(), N <- [p1, c3]])),
    %% It stays up, owning nothing, until it is taken back.
    {0, Status} = ?T:script(Ctx, c2, ["cluster_status"]),
    ?assertMatch({match, _}, re:run(Status, "this node is draining")),
    check(Ctx, fun() ->
                       {0, _} = ?T:script(Ctx, c2, ["undrain"]),
                       ok = ?T:wait_until(fun() -> ?T:settled(Ctx, All, [c1, c2, c3, c4]) end,
                                          20000)
               end),
    ?assert(lists:member(C2, [?T:owner(Ctx, p1, T) || T <- topics()])).

stop(Ctx) ->
    check(Ctx, fun() ->
                       {0, _} = ?T:script(Ctx, c4, ["stop"]),
                       ok = ?T:wait_until(fun() -> ?T:settled(Ctx, ?NODES, [c1, c2, c3]) end,
                                          10000)
               end),
    %% It was drained before it stopped: nobody was disconnected for it.
    [?assertEqual(nomatch, re:run(log(Ctx, N), "which left the cluster|whose upstream link "
                                  "was lost")) || N <- ?NODES].

log(#{tmp := Tmp} = Ctx, N) ->
    {ok, Text} = file:read_file(filename:join(Tmp, ?T:node_name(Ctx, N) ++ ".console.log")),
    Text.

topics() ->
    [list_to_binary("mv_" ++ integer_to_list(I)) || I <- lists:seq(1, ?NTOPICS)].

%% The topics the Kraken client on Node holds: all of them, but on p1 and c2
%% only one in four, so that their pattern subscribers get most entries through
%% its pattern alone (a node holding a topic anyway delivers its entries to
%% a matching pattern even without clustered patterns).
held(p1) ->
    [T || {I, T} <- lists:zip(lists:seq(1, ?NTOPICS), topics()), I rem 4 =:= 0];
held(c2) ->
    [T || {I, T} <- lists:zip(lists:seq(1, ?NTOPICS), topics()), I rem 4 =:= 1];
held(_) ->
    topics().

%%% The checker

%% Runs Event while a client on each node publishes continuously (and polls
%% what it receives); then checks that each got every (entry, topic) of the
%% others exactly once, never its own, and was not disconnected.
check(Ctx, Event) ->
    Topics = topics(),
    Self = self(),
    Clients = [spawn_link(fun() -> client(Ctx, N, Topics, Self) end) || N <- ?NODES],
    Patterns = [{N, spawn_link(fun() -> pattern_client(Ctx, N, Self) end)}
                || N <- ?PATTERN_NODES],
    RedisPub = spawn_link(fun() -> redis_publisher(Ctx, ?REDIS_PUBLISHER, Topics, Self,
                                                   <<"PUBLISH">>) end),
    ShardSub = spawn_link(fun() -> shard_client(Ctx, ?SHARD_SUBSCRIBER, Topics, Self) end),
    ShardPub = spawn_link(fun() -> redis_publisher(Ctx, ?SHARD_PUBLISHER, Topics, Self,
                                                   <<"SPUBLISH">>) end),
    Pubs = [ShardPub, RedisPub | Clients],
    [receive {subscribed, C} -> ok after 20000 -> error(subscribe_timeout) end
     || C <- [ShardSub | Pubs] ++ [P || {_, P} <- Patterns]],
    %% Nobody publishes before everybody is subscribed (a client's first
    %% entries could otherwise precede a slower client's subscription).
    [C ! go || C <- Pubs],
    timer:sleep(200),
    Event(),
    timer:sleep(300),
    [C ! stop || C <- Pubs],
    [ShardPublished, RedisPublished | Published] =
        [receive {published, C, Id, P} -> {C, Id, P} after 20000 -> error(stop) end
         || C <- Pubs],
    ?assert(lists:sum([length(P) || {_, _, P} <- Published]) > 100),
    ?assert(length(element(3, RedisPublished)) > 20),
    ?assert(length(element(3, ShardPublished)) > 20),
    [begin
         Expected = lists:sort([{Payload, T} || {_, Other, Ps} <- [RedisPublished | Published],
                                                Other =/= Id, {Ts, Payload} <- Ps, T <- Ts,
                                                lists:member(T, held(Id))]),
         C ! {expect, length(Expected)},
         Got = receive {got, C, G} -> G after 40000 -> error(collect_timeout) end,
         ?assertEqual({Id, connected}, {Id, element(1, Got)}),
         Pairs = lists:sort(element(2, Got)),
         Missing = Expected -- Pairs,
         Missing =/= [] andalso
             io:format(user, "~n~p missed ~b (entry, topic) pairs, e.g. ~p~n",
                       [Id, length(Missing), lists:sublist(Missing, 10)]),
         ?assertEqual({Id, length(Expected)}, {Id, length(Pairs)}),
         ?assertEqual({Id, []}, {Id, Pairs -- lists:usort(Pairs)}),   % no duplicate
         ?assertEqual({Id, []}, {Id, Expected -- Pairs}),   % none lost
         ?assertEqual({Id, Expected}, {Id, Pairs})
     end || {C, Id, _} <- Published],
    All = lists:sort([{Payload, T} || {_, _, Ps} <- [RedisPublished | Published],
                                      {Ts, Payload} <- Ps, T <- Ts]),
    [begin
         P ! {expect, length(All)},
         {State, Got} = receive {got, P, G} -> G after 40000 -> error(collect_timeout) end,
         Id = {pattern, N},
         ?assertEqual({Id, connected}, {Id, State}),
         Pairs = lists:sort(Got),
         ?assertEqual({Id, []}, {Id, Pairs -- lists:usort(Pairs)}),   % no duplicate
         ?assertEqual({Id, []}, {Id, All -- Pairs}),   % none lost
         ?assertEqual({Id, All}, {Id, Pairs})
     end || {N, P} <- Patterns],
    %% The shard subscriber: every SPUBLISH once, and nothing else (the
    %% channels' entries are another namespace); nobody above got an SPUBLISH.
    Shards = lists:sort([{Payload, T} || {Ts, Payload} <- element(3, ShardPublished),
                                         T <- Ts]),
    ShardSub ! {expect, length(Shards)},
    {SState, SGot} = receive {got, ShardSub, SG} -> SG after 40000 -> error(collect_timeout) end,
    ?assertEqual({shard, connected}, {shard, SState}),
    ?assertEqual({shard, Shards}, {shard, lists:sort(SGot)}),
    ok.

%% A Redis client on Node subscribed to every topic as a shard channel
%% (SSUBSCRIBE): as pattern_client, with smessage frames.
shard_client(Ctx, Node, Topics, Parent) ->
    R = ?T:redis_connect(Ctx, Node),
    ok = gen_tcp:send(R, ?T:resp([<<"SSUBSCRIBE">> | Topics])),
    [ok = ?T:redis_expect(R, ?T:resp_push([<<"ssubscribe">>, T], I))
     || {I, T} <- lists:zip(lists:seq(1, length(Topics)), Topics)],
    Parent ! {subscribed, self()},
    put(frames, fun ?T:smessages/1),
    pattern_loop(R, Parent, infinity, []).

%% A Redis client on Node with a pattern matching every topic: reads its
%% pmessage frames as they come (so that the node does not find it slow),
%% and, told how many to expect, reports them ({Message, Channel} pairs) once
%% that many came (or 20 s passed) and 200 ms more showed no duplicate.
pattern_client(Ctx, Node, Parent) ->
    R = ?T:redis_connect(Ctx, Node),
    ok = gen_tcp:send(R, ?T:resp([<<"PSUBSCRIBE">>, <<"mv_*">>])),
    ok = ?T:redis_expect(R, ?T:resp_push([<<"psubscribe">>, <<"mv_*">>], 1)),
    Parent ! {subscribed, self()},
    put(frames, fun ?T:pmessages/1),
    pattern_loop(R, Parent, infinity, []).

%% Reads the frames (the process's `frames' parser) as they come.
pattern_loop(R, Parent, Wanted, Got) ->
    Wanted1 = receive {expect, N} -> {N, deadline(20000)} after 0 -> Wanted end,
    case gen_tcp:recv(R, 0, 20) of
        {ok, More} ->
            Parse = get(frames),
            {New, Rest} = Parse(<<(get({redis_buf, R}))/binary, More/binary>>),
            put({redis_buf, R}, Rest),
            pattern_loop(R, Parent, Wanted1, New ++ Got);
        {error, timeout} when Wanted1 =:= infinity ->
            pattern_loop(R, Parent, Wanted1, Got);
        {error, timeout} ->
            {N1, Deadline} = Wanted1,
            case length(Got) >= N1 orelse erlang:monotonic_time(millisecond) > Deadline of
                true -> pattern_done(R, Parent, Got);
                false -> pattern_loop(R, Parent, Wanted1, Got)
            end;
        {error, Why} ->
            Parent ! {got, self(), {{closed, Why}, Got}}
    end.

%% A Redis client on Node that PUBLISHes (or SPUBLISHes: Cmd) to a random
%% topic every 5 ms (one at a time: each waits for its reply), from `go' to
%% `stop'.
redis_publisher(Ctx, Node, Topics, Parent, Cmd) ->
    R = ?T:redis_connect(Ctx, Node),
    ok = inet:setopts(R, [{packet, line}]),
    Parent ! {subscribed, self()},
    receive go -> ok end,
    rand:seed(exsss, erlang:phash2({Node, Cmd, self()})),
    redis_publish_loop(R, Node, Topics, Parent, Cmd, 1, []).

redis_publish_loop(R, Node, Topics, Parent, Cmd, K, Published) ->
    receive
        stop ->
            gen_tcp:close(R),
            Parent ! {published, self(), {Cmd, Node}, lists:reverse(Published)}
    after 5 ->
            T = lists:nth(rand:uniform(length(Topics)), Topics),
            P = iolist_to_binary(io_lib:format("~s/~s/~b", [Cmd, Node, K])),
            ok = gen_tcp:send(R, ?T:resp([Cmd, T, P])),
            {ok, <<":", _/binary>>} = gen_tcp:recv(R, 0, 10000),
            redis_publish_loop(R, Node, Topics, Parent, Cmd, K + 1, [{[T], P} | Published])
    end.

%% A late duplicate would show within 200 ms.
pattern_done(R, Parent, Got) ->
    timer:sleep(200),
    case gen_tcp:recv(R, 0, 100) of
        {ok, More} ->
            Parse = get(frames),
            {New, _} = Parse(<<(get({redis_buf, R}))/binary, More/binary>>),
            Parent ! {got, self(), {connected, New ++ Got}};
        {error, timeout} ->
            Parent ! {got, self(), {connected, Got}};
        {error, Why} ->
            Parent ! {got, self(), {{closed, Why}, Got}}
    end,
    gen_tcp:close(R).

client(Ctx, Node, Topics, Parent) ->
    S = ?T:connect(Ctx, Node),
    ok = kraken_client:subscribe(S, held(Node)),
    Parent ! {subscribed, self()},
    receive go -> ok end,
    rand:seed(exsss, erlang:phash2({Node, self()})),
    publish_loop(S, Node, Topics, Parent, 1, [], []).

publish_loop(S, Node, Topics, Parent, K, Published, Got) ->
    receive
        stop ->
            Parent ! {published, self(), Node, lists:reverse(Published)},
            receive {expect, N} -> collect(S, Parent, N, Got, deadline(20000)) end
    after 5 ->
            Ts = lists:usort([lists:nth(rand:uniform(length(Topics)), Topics)
                              || _ <- lists:seq(1, rand:uniform(2))]),
            P = iolist_to_binary(io_lib:format("~s/~b", [Node, K])),
            case kraken_client:publish(S, [{Ts, P}]) of
                ok ->
                    Got1 = case K rem 10 of
                               0 -> poll(S, Got);
                               _ -> Got
                           end,
                    case Got1 of
                        {closed, _} = Closed -> finish(S, Parent, Node, Published, Closed);
                        _ -> publish_loop(S, Node, Topics, Parent, K + 1, [{Ts, P} | Published],
                                          Got1)
                    end;
                {error, Why} ->
                    finish(S, Parent, Node, Published, {closed, {publish, Why}})
            end
    end.

%% A client that was disconnected: says so when asked.
finish(_S, Parent, Node, Published, Closed) ->
    receive stop -> ok end,
    Parent ! {published, self(), Node, lists:reverse(Published)},
    receive {expect, _} -> Parent ! {got, self(), Closed} end.

poll(S, Got) ->
    case kraken_client:receive_messages(S) of
        L when is_list(L) -> [{P, T} || {Ts, P} <- L, T <- Ts] ++ Got;
        {error, Why} -> {closed, {receive_messages, Why}}
    end.

collect(S, Parent, N, Got, Deadline) ->
    case poll(S, Got) of
        {closed, _} = Closed ->
            Parent ! {got, self(), Closed};
        Got1 when length(Got1) >= N ->
            timer:sleep(200),   % a late duplicate would show now
            case poll(S, Got1) of
                {closed, _} = Closed -> Parent ! {got, self(), Closed};
                Got2 -> Parent ! {got, self(), {connected, Got2}}
            end;
        Got1 ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> Parent ! {got, self(), {connected, Got1}};
                false -> timer:sleep(50), collect(S, Parent, N, Got1, Deadline)
            end
    end.

deadline(Ms) ->
    erlang:monotonic_time(millisecond) + Ms.

%%% Retroactive subscriptions across a move (docs/cluster.md, "Retroactive
%%% subscription" and "What does not work yet", item 1), during the drain of c2.
%%
%% Topics chosen by the cluster's hash (owner_of/3, as cluster_hash.c): two
%% that move from c2 to c1, two that move from c2 to c3 or c4, two that stay.
%% A client on c2 holds them all throughout.  A publisher on c3 publishes an
%% entry listing all of them every 20 ms from just after a horizon H (a second
%% boundary) until after the move.  While c2 drains, a prober retro_subscribes
%% from H on every node in turn (requests on their way while the owners
%% change); after it, c1 is asked for the topics it gained, and c2 for those
%% it gave away while holding them.  Every answer must be complete: each
%% entry since H on every topic exactly once (then the live ones): the
%% owners since H (c2, and c1, c3 or c4) are all live and keep their
%% entries, so the node asked takes from each what entered the cluster there
%% (link_entered), wherever the move is.  Before the entered marks, every
%% node asked for a topic across the move answered NOT_FOUND (and before
%% that, c1 answered from its own retention, which starts at the move:
%% entries missing).  The same for the Redis port's KRAKEN.RETROSUBSCRIBE
%% on c1.

-define(RT_EVERY, 20).

%% Across the join (docs/cluster.md, "Across moves"): three topics that move
%% to c4 (from whichever core owned them) and one that stays, published on
%% p1 every 20 ms from just after a horizon H until after the join; then,
%% with c4 in, a retro_subscribe from H on p2 (a proxy: it asks c4 and the
%% previous owner) and on each of c1-c3 (among them the previous owners,
%% which ask c4 for what entered there since, and add their own): each
%% answer complete.  Before the entered marks: NOT_FOUND (c4 gained the
%% topics after H; the previous owners, still live, kept the entries).
join_retro_start(Ctx) ->
    Names = [list_to_binary("jr_" ++ integer_to_list(I)) || I <- lists:seq(1, 400)],
    Owner = fun(T, Cores) -> owner_of(Ctx, T, Cores) end,
    ToC4 = lists:sublist([T || T <- Names, Owner(T, [c1, c2, c3, c4]) =:= c4], 3),
    Staying = lists:sublist([T || T <- Names, Owner(T, [c1, c2, c3, c4]) =/= c4], 1),
    Topics = ToC4 ++ Staying,
    H = ?T:next_second(),
    Self = self(),
    Pub = spawn_link(fun() -> rt_publish(?T:connect(Ctx, p1), Topics, 1, Self) end),
    timer:sleep(300),
    #{topics => Topics, h => H, pub => Pub}.

join_retro_check(Ctx, #{topics := Topics, h := H, pub := Pub}) ->
    Probes = [{N, S, kraken_client:retro_subscribe(S, H, Topics)}
              || N <- [p2, c1, c2, c3], S <- [?T:connect(Ctx, N)]],
    timer:sleep(200),
    Pub ! stop,
    N = receive {rt_published, Last} -> Last after 10000 -> error(no_publisher) end,
    [?assertEqual({Node, ok, ok}, {Node, R, case R of ok -> complete(S, Topics, N); _ -> none end})
     || {Node, S, R} <- Probes],
    [kraken_client:disconnect(S) || {_, S, _} <- Probes],
    ok.

retro_start(Ctx) ->
    Names = [list_to_binary("rt_" ++ integer_to_list(I)) || I <- lists:seq(1, 400)],
    Owner = fun(T, Cores) -> owner_of(Ctx, T, Cores) end,
    Moving = fun(To) -> [T || T <- Names, Owner(T, ?BEFORE) =:= c2,
                               lists:member(Owner(T, ?AFTER), To)] end,
    ToC1 = lists:sublist(Moving([c1]), 2),
    ToOthers = lists:sublist(Moving([c3, c4]), 2),
    Staying = lists:sublist([T || T <- Names, Owner(T, ?BEFORE) =/= c2], 2),
    Topics = ToC1 ++ ToOthers ++ Staying,
    6 = length(Topics),
    %% The hash here is the engine's.
    [?assertEqual(?T:node_atom(Ctx, Owner(T, ?BEFORE)), ?T:owner(Ctx, p1, T)) || T <- Topics],
    Holder = ?T:connect(Ctx, c2),
    ok = kraken_client:subscribe(Holder, Topics),
    H = ?T:next_second(),
    Self = self(),
    Pub = spawn_link(fun() -> rt_publish(?T:connect(Ctx, c3), Topics, 1, Self) end),
    timer:sleep(300),
    #{topics => Topics, to_c1 => ToC1, moved => ToC1 ++ ToOthers, h => H, holder => Holder,
      pub => Pub}.

rt_publish(S, Topics, I, Parent) ->
    ok = kraken_client:publish(S, [{Topics, integer_to_binary(I)}]),
    receive
        stop -> Parent ! {rt_published, I}, kraken_client:disconnect(S)
    after ?RT_EVERY -> rt_publish(S, Topics, I + 1, Parent)
    end.

%% The prober: every 100 ms a new client on the next node retro_subscribes
%% from H to all the topics; the answer and the connection are kept.
retro_probe_start(Ctx, #{topics := Topics, h := H}) ->
    Self = self(),
    spawn_link(fun() -> probe_loop(Ctx, Topics, H, [p1, c1, c2, p2, c3], Self, []) end).

probe_loop(Ctx, Topics, H, [N | Ns], Parent, Acc) ->
    S = ?T:connect(Ctx, N),
    Acc1 = [{N, kraken_client:retro_subscribe(S, H, Topics), S} | Acc],
    receive
        stop -> [gen_tcp:controlling_process(S1, Parent) || {_, _, S1} <- Acc1],
                Parent ! {probes, lists:reverse(Acc1)}
    after 100 -> probe_loop(Ctx, Topics, H, Ns ++ [N], Parent, Acc1)
    end.

retro_probe_stop(Prober) ->
    Prober ! stop,
    receive {probes, Probes} -> Probes after 20000 -> error(prober) end.

retro_check(Ctx, #{topics := Topics, to_c1 := ToC1, moved := Moved, h := H,
                   holder := Holder, pub := Pub}, Probes) ->
    %% After the move: c1 for topics it gained, c2 for those it gave away
    %% while its client held them.
    AtC1 = ?T:connect(Ctx, c1),
    AtC2 = ?T:connect(Ctx, c2),
    After = [{c1, kraken_client:retro_subscribe(AtC1, H, ToC1), AtC1, ToC1},
             {c2, kraken_client:retro_subscribe(AtC2, H, Moved), AtC2, Moved}],
    timer:sleep(200),
    Pub ! stop,
    N = receive {rt_published, Last} -> Last after 10000 -> error(no_publisher) end,
    Checked = [{Node, Result, case Result of ok -> complete(S, Ts, N); _ -> none end}
               || {Node, Result, S, Ts} <- [{Nd, R, S, Topics} || {Nd, R, S} <- Probes] ++ After],
    io:format(user, "~nretroactive subscriptions across the drain (~b entries): ~b complete, "
              "~b NOT_FOUND~n", [N, length([x || {_, ok, _} <- Checked]),
                                 length([x || {_, {error, not_found}, _} <- Checked])]),
    %% Every answer complete: the owners since H are all live and keep
    %% their entries (before: NOT_FOUND from every node asked across the
    %% move, the data was there).
    [?assertEqual({Node, ok, ok}, {Node, R, C}) || {Node, R, C} <- Checked],
    %% The Redis port's KRAKEN.RETROSUBSCRIBE takes the same path: on c1,
    %% which gained those topics without holding them, the subscribe frames
    %% then every entry since H on each (before: -NOTFOUND).
    Rd = ?T:redis_connect(Ctx, c1),
    ok = gen_tcp:send(Rd, ?T:resp([<<"KRAKEN.RETROSUBSCRIBE">>, integer_to_binary(H) | ToC1])),
    [ok = ?T:redis_expect(Rd, ?T:resp_push([<<"subscribe">>, T], I))
     || {I, T} <- lists:zip(lists:seq(1, length(ToC1)), ToC1)],
    ?assertEqual([{T, I} || T <- lists:sort(ToC1), I <- lists:seq(1, N)],
                 lists:sort(redis_messages(Rd, N * length(ToC1)))),
    ?assertEqual(<<>>, get({redis_buf, Rd})),
    ?assertEqual({error, timeout}, gen_tcp:recv(Rd, 0, 200)),   % no -NOTFOUND after
    gen_tcp:close(Rd),
    [kraken_client:disconnect(S) || S <- [Holder, AtC1, AtC2] ++ [S || {_, _, S} <- Probes]],
    ok.

%% The next Count Redis `message' frames on R: [{Channel, Integer}].
redis_messages(R, Count) ->
    [{Chan, binary_to_integer(Msg)} || {Msg, Chan} <- ?T:redis_messages(R, Count)].

%% Whether S got each of 1..N on each of Topics exactly once.
complete(S, Topics, N) ->
    Msgs = ?T:receive_msgs(S, N * length(Topics), 5000),
    Got = lists:sort([{T, binary_to_integer(P)} || {Ts, P} <- Msgs, T <- Ts]),
    Want = [{T, I} || T <- lists:sort(Topics), I <- lists:seq(1, N)],
    case Got =:= Want of
        true -> ok;
        false -> {missing, length(Want -- Got), extra, length(Got -- Want)}
    end.

%% The owner of T among Cores (names), by the cluster's hash (cluster_hash.c).
owner_of(Ctx, T, Cores) ->
    Scores = [{score(fnv(T) bxor fnv(atom_to_binary(?T:node_atom(Ctx, C)))),
               atom_to_binary(?T:node_atom(Ctx, C)), C} || C <- Cores],
    %% Highest score; ties to the smaller name.
    [{_, _, Best} | _] = lists:sort(fun({S1, N1, _}, {S2, N2, _}) ->
                                            S1 > S2 orelse (S1 =:= S2 andalso N1 =< N2)
                                    end, Scores),
    Best.

-define(M64, 16#FFFFFFFFFFFFFFFF).   % FNV-1a 64 and splitmix64's finaliser

fnv(Bin) ->
    lists:foldl(fun(B, H) -> ((H bxor B) * 16#100000001b3) band ?M64 end,
                16#cbf29ce484222325, binary_to_list(Bin)).

score(Z0) ->
    Z1 = ((Z0 bxor (Z0 bsr 30)) * 16#bf58476d1ce4e5b9) band ?M64,
    Z2 = ((Z1 bxor (Z1 bsr 27)) * 16#94d049bb133111eb) band ?M64,
    Z2 bxor (Z2 bsr 31).
