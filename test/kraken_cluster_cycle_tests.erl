%% @doc A cycle of `parents' (docs/cluster.md, "A proxy below a proxy"), on
%% real nodes started by bin/kraken on loopback: x1 with `parents [x2]' and
%% x2 with `parents [x1]'.  Each sees, from the other's heartbeats, that its
%% parent sits below it, says so in its log and does not use it: it has no
%% upstream, so a publish is refused (`SERVER_ERROR cluster core
%% unavailable').  Before, each linked to the other as its child: a
%% subscribe through one waited for the other's confirmation, which waited
%% for the first's (seen here ending in `SERVER_ERROR cluster core
%% unavailable' for the subscriber), and what one forwarded the other would
%% forward back.
-module(kraken_cluster_cycle_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_tests, [script/3, wait_until/2, node_name/2, node_atom/2]).

cycle_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             [{timeout, 60, {"a cycle of parents: each says so and does not use the other; "
                             "a publish is refused, not forwarded round",
                             fun() -> cycle(Ctx) end}}]
     end}.

setup() ->
    Ctx0 = kraken_cluster_tests:base_ctx("kcyc"),
    Ports = #{x1 => kraken_cluster_tests:free_port(), x2 => kraken_cluster_tests:free_port()},
    Ctx = Ctx0#{ports => Ports},
    Self = self(),
    Other = #{x1 => x2, x2 => x1},
    [spawn_link(fun() ->
                        Args = ["start", "-kraken", "tcp_server_port",
                                integer_to_list(maps:get(N, Ports)),
                                "-kraken", "listen_ip", "\"127.0.0.1\"",
                                "-kraken", "role", "proxy",
                                "-kraken", "parents",
                                "[" ++ node_name(Ctx, maps:get(N, Other)) ++ "]"]
                            ++ kraken_cluster_tests:engine_args(),
                        Self ! {started, N, script(Ctx, N, Args)}
                end) || N <- [x1, x2]],
    Pids = [receive
                {started, N, {0, Out}} ->
                    {match, [P]} = re:run(Out, "\\(os pid (\\d+)\\)",
                                          [{capture, all_but_first, list}]),
                    list_to_integer(P);
                {started, N, Bad} ->
                    error({start_failed, N, Bad})
            after 90000 -> error(start_timeout)
            end || N <- [x1, x2]],
    Ctx#{os_pids => Pids}.

cleanup(Ctx = #{os_pids := Pids, tmp := Tmp}) ->
    [_ = script(Ctx, N, ["stop"]) || N <- [x1, x2]],
    kraken_cluster_tests:sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- Pids],
    kraken_cluster_tests:base_cleanup(Ctx).

cycle(Ctx = #{ports := Ports, tmp := Tmp}) ->
    [ok = wait_until(fun() ->
                             Log = filename:join(Tmp, node_name(Ctx, N) ++ ".console.log"),
                             {ok, Text} = file:read_file(Log),
                             re:run(Text, "parent " ++ atom_to_list(node_atom(Ctx, P)) ++
                                        " sits below this node", [{capture, none}]) =:= match
                     end, 15000) || {N, P} <- [{x1, x2}, {x2, x1}]],
    {ok, S} = kraken_client:connect({127, 0, 0, 1}, maps:get(x2, Ports)),
    ok = kraken_client:subscribe(S, [<<"cyc">>]),
    {ok, P} = kraken_client:connect({127, 0, 0, 1}, maps:get(x1, Ports)),
    ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                 kraken_client:publish(P, [{[<<"cyc">>], <<"hi">>}])),
    timer:sleep(200),
    ?assertEqual([], kraken_client:receive_messages(S)),
    kraken_client:disconnect(P),
    kraken_client:disconnect(S),
    ok.
