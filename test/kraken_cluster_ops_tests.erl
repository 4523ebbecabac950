%% @doc What an operator sees of a cluster (docs/cluster.md, "Runbook"), on
%% two real cores started by bin/kraken on loopback:
%%
%%   - o1 is given a seed that never answers (a typo in `cluster_nodes'):
%%     it forms a cluster of its own and serves, as before, but
%%     `cluster_status' ends with `seeds not reached: <seed>' and its log
%%     warns about it (first 10 s after its start);
%%   - gaining the quorum, and draining on purpose, are logged at notice
%%     level, not as warnings;
%%   - `undrain' of a core that was never drained says so;
%%   - a drained core shows as `core/drained' in the others'
%%     `cluster_status' (its heartbeats say it drains);
%%   - a core whose VM is stopped (SIGSTOP) is shown `dead (Ns)' by the
%%     others (before, it vanished from the list at the deadline);
%%   - o2 is named on another host name (`localhost') and both advertise a
%%     loopback address: each warns that the other's engine cannot reach
%%     it there;
%%   - o3, started with `cluster_join_only true' and only the seed that
%%     never answers, does not form a cluster of its own (as o1 did): it
%%     stays not ready, its clients held, `quorum: NO'; restarted with o1
%%     as its seed, it is admitted and serves;
%%   - o4, started with another Erlang cookie and o1 as its seed: it tries
%%     o1 every 5 s, not every tick (each attempt makes o1 log an error:
%%     it logged five a second), says in its log and its `cluster_status'
%%     that o1 runs but refused the connection (a different cookie?), and
%%     `bin/kraken status' without its cookie says that the node does not
%%     answer though epmd lists it (it said "not running");
%%   - o5, `role proxy' given nothing to join: `start' warns on the terminal
%%     (it started silently, ready, refusing every publish), and `status'
%%     says it is not ready (exit 4): no core is live there.
-module(kraken_cluster_ops_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_tests, [wait_until/2]).

%% For kraken_cluster_advertise_tests, whose fixture has the same shape
%% (names, tmp).
-export([script/3, logged/3, row/3]).

-define(OTHER_COOKIE, "kraken_ops_other_cookie").

ops_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             {inorder,
              [{timeout, 60, {"undrain of a core never drained says so; quorum logged at "
                              "notice level", fun() -> not_drained(Ctx) end}},
               {timeout, 60, {"a drained core shows as drained on the other nodes",
                              fun() -> drained_shown(Ctx) end}},
               {timeout, 60, {"a core whose VM is stopped is shown dead, not dropped",
                              fun() -> stopped_shown_dead(Ctx) end}},
               {timeout, 60, {"a member on another host name advertising loopback: "
                              "a warning", fun() -> loopback_warned(Ctx) end}},
               {timeout, 60, {"a seed never reached: cluster_status and the log name it",
                              fun() -> seed_not_reached(Ctx) end}},
               {timeout, 60, {"another cookie: tried every 5 s, not every tick; said in the "
                              "log, cluster_status and bin/kraken status",
                              fun() -> other_cookie(Ctx) end}},
               {timeout, 60, {"role proxy with nothing to join: a warning on the terminal",
                              fun() -> lone_proxy(Ctx) end}},
               {timeout, 60, {"cluster_join_only: a node hearing nobody waits (its clients "
                              "held) instead of forming a cluster alone; it joins a member",
                              fun() -> join_only(Ctx) end}}]}
     end}.

%%% Fixture

setup() ->
    Ctx0 = kraken_cluster_tests:base_ctx("kops"),
    #{prefix := Prefix, host := Host} = Ctx0,
    Names = #{o1 => Prefix ++ "o1@" ++ Host, o2 => Prefix ++ "o2@localhost",
              o3 => Prefix ++ "o3@" ++ Host, o4 => Prefix ++ "o4@" ++ Host,
              o5 => Prefix ++ "o5@" ++ Host,
              typo => Prefix ++ "otypo@" ++ Host},
    Ports = #{o1 => kraken_cluster_tests:free_port(), o2 => kraken_cluster_tests:free_port(),
              o3 => kraken_cluster_tests:free_port()},
    Ctx = Ctx0#{names => Names, ports => Ports},
    Seeds = #{o1 => maps:get(typo, Names), o2 => maps:get(o1, Names)},
    Start = fun(N) ->
                    Args = ["start", "-kraken", "tcp_server_port",
                            integer_to_list(maps:get(N, Ports)),
                            "-kraken", "listen_ip", "\"127.0.0.1\"",
                            "-kraken", "cluster_nodes", "[" ++ maps:get(N, Seeds) ++ "]"]
                        ++ kraken_cluster_tests:engine_args(),
                    fun() -> script(Ctx, N, Args) end
            end,
    Pids = maps:from_list(kraken_cluster_tests:start_all([{N, Start(N)} || N <- [o1, o2]])),
    Ctx#{os_pids => Pids}.

cleanup(Ctx = #{os_pids := Pids, tmp := Tmp}) ->
    [_ = os:cmd("kill -CONT -" ++ integer_to_list(P) ++ " 2>/dev/null") || P <- maps:values(Pids)],
    _ = script(Ctx, o4, ["stop", "-setcookie", ?OTHER_COOKIE]),
    [_ = script(Ctx, N, ["stop"]) || N <- [o5, o3, o2, o1]],
    kraken_cluster_tests:sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- maps:values(Pids)],
    kraken_cluster_tests:base_cleanup(Ctx).

%% bin/kraken COMMAND for node N (o1, o2).
script(Ctx = #{names := Names}, N, Args) ->
    kraken_cluster_tests:script_as(Ctx, maps:get(N, Names), Args).

%% Node N's console log (empty before it wrote one).
log(#{tmp := Tmp, names := Names}, N) ->
    [Short | _] = string:split(maps:get(N, Names), "@"),
    case file:read_file(filename:join(Tmp, Short ++ ".console.log")) of
        {ok, Text} -> Text;
        {error, enoent} -> <<>>
    end.

logged(Ctx, N, Re) ->
    re:run(log(Ctx, N), Re, [{capture, none}, multiline]) =:= match.

%% The cluster_status row of node M as seen from node N.
row(Ctx = #{names := Names}, N, M) ->
    {0, Out} = script(Ctx, N, ["cluster_status"]),
    case [L || L <- string:split(Out, "\n", all),
               lists:prefix(maps:get(M, Names) ++ " ", L)] of
        [Row] -> string:lexemes(Row, " ");
        [] -> []
    end.

both_serve(Ctx) ->
    ok = wait_until(fun() ->
                            lists:all(fun(N) -> element(1, script(Ctx, N, ["status"])) =:= 0 end,
                                      [o1, o2]) andalso
                                length(row(Ctx, o1, o2)) >= 5 andalso
                                length(row(Ctx, o2, o1)) >= 5
                    end, 30000).

%%% Tests

not_drained(Ctx = #{names := Names}) ->
    both_serve(Ctx),
    ?assertEqual({0, "node " ++ maps:get(o1, Names) ++ " was not drained\n"},
                 script(Ctx, o1, ["undrain"])),
    %% Gaining the quorum is good news: notice, not a warning.
    ok = wait_until(fun() -> logged(Ctx, o1, " notice: kraken cluster: quorum: ") end, 5000),
    ?assertNot(logged(Ctx, o1, " warning: kraken cluster: quorum: ")).

drained_shown(Ctx = #{names := Names}) ->
    ?assertMatch({0, _}, script(Ctx, o2, ["drain"])),
    ?assertMatch(["core/drained", _ | _], tl(row(Ctx, o1, o2))),
    ?assertMatch(["core/drained", _ | _], tl(row(Ctx, o2, o2))),
    ?assert(logged(Ctx, o2, " notice: kraken cluster: draining")),
    ?assertEqual({0, "node " ++ maps:get(o2, Names) ++ " takes its topics back\n"},
                 script(Ctx, o2, ["undrain"])),
    ok = wait_until(fun() -> lists:member("core", row(Ctx, o1, o2)) end, 10000).

stopped_shown_dead(Ctx = #{os_pids := Pids}) ->
    Pid = integer_to_list(maps:get(o2, Pids)),
    _ = os:cmd("kill -STOP -" ++ Pid),
    try
        ok = wait_until(fun() ->
                                case row(Ctx, o1, o2) of
                                    [_, "core", _, "dead", Secs | _] ->
                                        re:run(Secs, "^\\(\\d+s\\)$", [{capture, none}]) =:= match;
                                    _ ->
                                        false
                                end
                        end, 10000)
    after
        _ = os:cmd("kill -CONT -" ++ Pid)
    end,
    %% Heard again: live again.
    ok = wait_until(fun() -> lists:member("ago", row(Ctx, o1, o2)) end, 15000).

loopback_warned(Ctx) ->
    ok = wait_until(fun() ->
                            logged(Ctx, o1, "warning: kraken cluster: this node advertises the "
                                   "loopback address 127.0.0.1") andalso
                                logged(Ctx, o2, "warning: kraken cluster: this node advertises "
                                       "the loopback address 127.0.0.1")
                    end, 5000).

join_only(Ctx = #{names := Names, ports := Ports}) ->
    Start = fun(Seed) ->
                    {0, _} = script(Ctx, o3, ["start", "-kraken", "tcp_server_port",
                                              integer_to_list(maps:get(o3, Ports)),
                                              "-kraken", "listen_ip", "\"127.0.0.1\"",
                                              "-kraken", "cluster_join_only", "true",
                                              "-kraken", "cluster_nodes",
                                              "[" ++ maps:get(Seed, Names) ++ "]"]
                                    ++ kraken_cluster_tests:engine_args())
            end,
    Start(typo),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, maps:get(o3, Ports), [binary, {active, false}]),
    ok = gen_tcp:send(S, <<"version\r\n">>),
    %% Well past the 0.5 s after which o1, given the same seed, served.
    timer:sleep(2500),
    ?assertEqual({error, timeout}, gen_tcp:recv(S, 0, 100)),   % held, not served
    {4, Status} = script(Ctx, o3, ["status"]),
    ?assertMatch({match, _}, re:run(Status, "not ready")),
    {0, CS} = script(Ctx, o3, ["cluster_status"]),
    ?assertMatch({match, _}, re:run(CS, "^quorum: NO", [multiline])),
    ?assert(logged(Ctx, o3, "cluster_join_only: this node serves once a member")),
    gen_tcp:close(S),
    {0, _} = script(Ctx, o3, ["stop"]),
    %% Given a live member, it joins it and serves.
    Start(o1),
    ok = wait_until(fun() -> element(1, script(Ctx, o3, ["status"])) =:= 0 end, 10000),
    {ok, S2} = gen_tcp:connect({127, 0, 0, 1}, maps:get(o3, Ports), [binary, {active, false}]),
    ok = gen_tcp:send(S2, <<"version\r\n">>),
    ?assertMatch({ok, <<"VERSION ", _/binary>>}, gen_tcp:recv(S2, 0, 5000)),
    gen_tcp:close(S2),
    {0, _} = script(Ctx, o3, ["stop"]).

seed_not_reached(Ctx = #{names := Names}) ->
    Typo = maps:get(typo, Names),
    {0, Out} = script(Ctx, o1, ["cluster_status"]),
    ?assertMatch({match, _}, re:run(Out, "^seeds not reached: " ++ Typo ++ "$", [multiline])),
    {0, Out2} = script(Ctx, o2, ["cluster_status"]),
    ?assertEqual(nomatch, re:run(Out2, "seeds not reached")),
    %% The warning: 10 s after the start, then every minute.
    ok = wait_until(fun() ->
                            logged(Ctx, o1, "warning: kraken cluster: cluster_nodes " ++ Typo ++
                                       " never reached")
                    end, 15000).

other_cookie(Ctx = #{names := Names, prefix := Prefix}) ->
    O1 = maps:get(o1, Names),
    O4 = maps:get(o4, Names),
    %% A second seed with the usual cookie (a bare node), stopped once it
    %% refused: o4 must no longer say that it runs.
    {ok, Peer, O6Atom} = peer:start_link(#{name => list_to_atom(Prefix ++ "o6")}),
    O6 = atom_to_list(O6Atom),
    Rejected = fun() ->
                       {match, L} = re:run(log(Ctx, o1), "Connection attempt from node " ++ O4 ++
                                               " rejected", [global]),
                       length(L)
               end,
    {0, _} = script(Ctx, o4, ["start", "-setcookie", ?OTHER_COOKIE,
                              "-kraken", "tcp_server_port",
                              integer_to_list(kraken_cluster_tests:free_port()),
                              "-kraken", "listen_ip", "\"127.0.0.1\"",
                              "-kraken", "cluster_nodes", "[" ++ O1 ++ "," ++ O6 ++ "]"]
                 ++ kraken_cluster_tests:engine_args()),
    ok = wait_until(fun() ->
                            logged(Ctx, o4, "warning: kraken cluster: node " ++ O1 ++
                                       " refused this node's connection, though it runs") andalso
                                logged(Ctx, o4, "warning: kraken cluster: node " ++ O6 ++
                                           " refused this node's connection, though it runs")
                    end, 5000),
    ok = peer:stop(Peer),
    timer:sleep(3000),
    %% One attempt, maybe two (5 s apart), where there were 15 or more.
    ?assert(Rejected() =< 2),
    %% o1 refused and runs; o6, tried again after 5 s, no longer runs (it
    %% was still said to run, refusing).
    ok = wait_until(
           fun() ->
                   {0, CS} = script(Ctx, o4, ["cluster_status", "-setcookie", ?OTHER_COOKIE]),
                   re:run(CS, "^seeds not reached: " ++ O1 ++ " \\(it runs but refused the "
                          "connection: a different Erlang cookie\\?\\) " ++ O6 ++ "$",
                          [multiline, {capture, none}]) =:= match
           end, 8000),
    [_, Host] = string:split(O4, "@"),
    ?assertEqual({1, "kraken: node " ++ O4 ++ " does not answer: epmd on " ++ Host ++
                      " lists it, but it refused this command's connection (a different "
                      "Erlang cookie? run the command as the node's user, or give it the "
                      "node's -setcookie)\n"},
                 script(Ctx, o4, ["status"])),
    ?assertMatch({0, _}, script(Ctx, o4, ["stop", "-setcookie", ?OTHER_COOKIE])).

lone_proxy(Ctx) ->
    {0, Out} = script(Ctx, o5, ["start", "-kraken", "role", "proxy",
                                "-kraken", "tcp_server_port",
                                integer_to_list(kraken_cluster_tests:free_port()),
                                "-kraken", "listen_ip", "\"127.0.0.1\""]
                      ++ kraken_cluster_tests:engine_args()),
    ?assertMatch({match, _}, re:run(Out, "^kraken: role proxy without cluster_nodes, parents or "
                                    "upstreams: this proxy reaches no core and refuses every "
                                    "publish until a core names it in its cluster_nodes$",
                                    [multiline])),
    %% It does not serve: `status' exits 4 saying why (/readyz answers 503),
    %% so that a load balancer or the runbook's wait does not send it
    %% clients (it said ready, exit 0).
    %% (Held at first, like any node in a cluster, until its first view.)
    NoCore = "is not ready: no core of the cluster is live here \\(publishes are refused "
             "until one is heard\\)",
    ok = wait_until(fun() ->
                            {Rc, St} = script(Ctx, o5, ["status"]),
                            Rc =:= 4 andalso re:run(St, NoCore, [{capture, none}]) =:= match
                    end, 5000),
    ?assertMatch({0, _}, script(Ctx, o5, ["stop"])).
