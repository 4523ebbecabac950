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
%% exactly once, never its own, and none was disconnected.
-module(kraken_cluster_moves).

-include_lib("eunit/include/eunit.hrl").

-export([join/1, drain/1, stop/1]).

-define(T, kraken_cluster_tests).
-define(NODES, [c1, c2, c3, p1, p2]).   % a client on each
-define(NTOPICS, 40).

join(Ctx) ->
    ok = ?T:wait_until(fun() -> ?T:settled(Ctx, ?NODES, [c1, c2, c3]) end, 10000),
    C4 = ?T:node_atom(Ctx, c4),
    check(Ctx, fun() ->
                       [{c4, _}] = ?T:start_nodes(Ctx, [c4]),
                       ok = ?T:wait_until(fun() ->
                                                  ?T:settled(Ctx, [c4 | ?NODES],
                                                             [c1, c2, c3, c4])
                                          end, 20000)
               end),
    %% Some of the topics did move to it.
    ?assert(lists:member(C4, [?T:owner(Ctx, p1, T) || T <- topics()])).

drain(Ctx) ->
    All = [c4 | ?NODES],
    C2 = ?T:node_atom(Ctx, c2),
    ?assert(lists:member(C2, [?T:owner(Ctx, p1, T) || T <- topics()])),
    check(Ctx, fun() ->
                       {0, Out} = ?T:script(Ctx, c2, ["drain"]),
                       ?assertMatch({match, _}, re:run(Out, "is drained")),
                       %% Drained: nobody sees it own anything.
                       ok = ?T:wait_until(fun() -> ?T:settled(Ctx, All, [c1, c3, c4]) end, 2000)
               end),
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

%%% The checker

%% Runs Event while a client on each node publishes continuously (and polls
%% what it receives); then checks that each got every (entry, topic) of the
%% others exactly once, never its own, and was not disconnected.
check(Ctx, Event) ->
    Topics = topics(),
    Self = self(),
    Clients = [spawn_link(fun() -> client(Ctx, N, Topics, Self) end) || N <- ?NODES],
    [receive {subscribed, C} -> ok after 20000 -> error(subscribe_timeout) end
     || C <- Clients],
    timer:sleep(200),
    Event(),
    timer:sleep(300),
    [C ! stop || C <- Clients],
    Published = [receive {published, C, Id, P} -> {C, Id, P} after 20000 -> error(stop) end
                 || C <- Clients],
    ?assert(lists:sum([length(P) || {_, _, P} <- Published]) > 100),
    [begin
         Expected = lists:sort([{Payload, T} || {_, Other, Ps} <- Published, Other =/= Id,
                                                {Ts, Payload} <- Ps, T <- Ts]),
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
    ok.

client(Ctx, Node, Topics, Parent) ->
    S = ?T:connect(Ctx, Node),
    ok = kraken_client:subscribe(S, Topics),
    Parent ! {subscribed, self()},
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
