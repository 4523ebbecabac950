%% @doc The option `cluster_advertise' (docs/cluster.md, "Configuration"),
%% on real nodes started by bin/kraken on loopback (any 127/8 address
%% reaches a listener on 0.0.0.0):
%%
%%   - core a1 listens on every address (listen_ip 0.0.0.0) and advertises
%%     127.0.0.7: proxy p1's `cluster_status' shows that endpoint, p1's
%%     link to it comes up, and publishes cross it both ways (a subscriber
%%     on p1 gets a1's publish, a subscriber on a1 gets p1's);
%%   - p1 listens on 127.0.0.1 and advertises 127.0.0.8 (as behind NAT):
%%     a1 shows that endpoint, and p1 warns at start that the others
%%     connect to another address than the one it listens on (a1 does not:
%%     it listens on every address);
%%   - a host name that does not resolve refuses the start with one line
%%     naming it, and leaves no node behind.
-module(kraken_cluster_advertise_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_tests, [wait_until/2]).
-import(kraken_cluster_ops_tests, [script/3, logged/3, row/3]).

advertise_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             {inorder,
              [{timeout, 60, {"the advertised endpoints are shown, and the link to a1's "
                              "comes up", fun() -> endpoints_shown(Ctx) end}},
               {timeout, 60, {"publishes cross the link to the advertised address",
                              fun() -> end_to_end(Ctx) end}},
               {timeout, 30, {"listening on one address, advertising another: a warning",
                              fun() -> listen_warned(Ctx) end}},
               {timeout, 60, {"a host name that does not resolve refuses the start",
                              fun() -> unresolvable(Ctx) end}}]}
     end}.

%%% Fixture

setup() ->
    Ctx0 = kraken_cluster_tests:base_ctx("kadv"),
    #{prefix := Prefix, host := Host} = Ctx0,
    Names = #{a1 => Prefix ++ "a1@" ++ Host, p1 => Prefix ++ "p1@" ++ Host,
              bad => Prefix ++ "bad@" ++ Host},
    Ports = #{a1 => kraken_cluster_tests:free_port(), p1 => kraken_cluster_tests:free_port()},
    Ctx = Ctx0#{names => Names, ports => Ports},
    Options = #{a1 => ["-kraken", "listen_ip", "\"0.0.0.0\"",
                       "-kraken", "cluster_advertise", "\"127.0.0.7\"",
                       "-kraken", "cluster_nodes", "[" ++ maps:get(p1, Names) ++ "]"],
                p1 => ["-kraken", "listen_ip", "\"127.0.0.1\"",
                       "-kraken", "cluster_advertise", "\"127.0.0.8\"",
                       "-kraken", "role", "proxy",
                       "-kraken", "cluster_nodes", "[" ++ maps:get(a1, Names) ++ "]"]},
    Start = fun(N) ->
                    Args = ["start", "-kraken", "tcp_server_port",
                            integer_to_list(maps:get(N, Ports)) | maps:get(N, Options)]
                        ++ kraken_cluster_tests:engine_args(),
                    fun() -> script(Ctx, N, Args) end
            end,
    Pids = maps:from_list(kraken_cluster_tests:start_all([{N, Start(N)} || N <- [a1, p1]])),
    Ctx#{os_pids => Pids}.

cleanup(Ctx = #{os_pids := Pids, tmp := Tmp}) ->
    [_ = script(Ctx, N, ["stop"]) || N <- [p1, a1]],
    kraken_cluster_tests:sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- maps:values(Pids)],
    kraken_cluster_tests:base_cleanup(Ctx).

%% A client of node N, on the loopback address (a1 listens on every one).
connect(#{ports := Ports}, N) ->
    {ok, S} = kraken_client:connect({127, 0, 0, 1}, maps:get(N, Ports)),
    S.

%%% Tests

endpoints_shown(Ctx = #{ports := Ports}) ->
    A1 = "127.0.0.7:" ++ integer_to_list(maps:get(a1, Ports)),
    P1 = "127.0.0.8:" ++ integer_to_list(maps:get(p1, Ports)),
    %% NODE ROLE ENDPOINT HEARD(2 words) LINK ...: p1's link to a1 is up.
    ok = wait_until(fun() ->
                            case row(Ctx, p1, a1) of
                                [_, "core", A1, _, "ago", "up" | _] -> true;
                                _ -> false
                            end
                    end, 20000),
    ?assertMatch([_, "proxy", P1 | _], row(Ctx, a1, p1)),
    ?assertMatch([_, "core", A1, "self" | _], row(Ctx, a1, a1)),
    ?assert(logged(Ctx, a1, "kraken cluster: core \\S+, endpoint " ++ A1 ++
                       " \\(cluster_advertise\\)")).

end_to_end(Ctx) ->
    T1 = <<"adv_down">>,
    T2 = <<"adv_up">>,
    %% p1 holds T1 upstream at a1 (the only core) over its link to
    %% 127.0.0.7; a1's publish comes back over it. p1's publish of T2 goes
    %% to a1 over the same link.
    SubP = connect(Ctx, p1),
    ok = kraken_client:subscribe(SubP, [T1]),
    SubA = connect(Ctx, a1),
    ok = kraken_client:subscribe(SubA, [T2]),
    PubA = connect(Ctx, a1),
    PubP = connect(Ctx, p1),
    ok = kraken_client:publish(PubA, [{[T1], <<"from a1">>}]),
    ok = kraken_client:publish(PubP, [{[T2], <<"from p1">>}]),
    ?assertEqual([{[T1], <<"from a1">>}], kraken_cluster_tests:receive_msgs(SubP, 1, 5000)),
    ?assertEqual([{[T2], <<"from p1">>}], kraken_cluster_tests:receive_msgs(SubA, 1, 5000)),
    [kraken_client:disconnect(S) || S <- [SubP, SubA, PubA, PubP]],
    ok.

listen_warned(Ctx) ->
    ?assert(logged(Ctx, p1, "warning: kraken cluster: this node listens on listen_ip "
                   "127\\.0\\.0\\.1 but advertises 127\\.0\\.0\\.8 \\(cluster_advertise\\)")),
    ?assertNot(logged(Ctx, a1, "this node listens on")).

unresolvable(Ctx = #{names := Names}) ->
    Args = ["start", "-kraken", "tcp_server_port",
            integer_to_list(kraken_cluster_tests:free_port()),
            "-kraken", "cluster_advertise", "\"no-such-host.invalid\"",
            "-kraken", "cluster_nodes", "[" ++ maps:get(a1, Names) ++ "]"]
        ++ kraken_cluster_tests:engine_args(),
    {1, Out} = script(Ctx, bad, Args),
    ?assertMatch({match, _}, re:run(Out, "^kraken: cluster_advertise no-such-host\\.invalid "
                                    "does not resolve: ", [multiline])),
    ?assertMatch({1, _}, script(Ctx, bad, ["status"])),
    %% Refused before anything listened: a1 never heard of it.
    ?assertEqual([], row(Ctx, a1, bad)).
