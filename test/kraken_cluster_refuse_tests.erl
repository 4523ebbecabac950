%% @doc What a cluster node refuses rather than lose silently
%% (docs/cluster.md, "Failures"):
%%
%%   - a publish with a topic owned by a core whose link is not up is
%%     refused whole: Kraken `SERVER_ERROR cluster core unavailable' (then
%%     the connection closes, as after every Kraken error), Redis `-ERR
%%     cluster core unavailable: not published' (the connection stays);
%%     nothing of it is delivered (not even locally), the core's DROPPED
%%     counts it, the log says why. The unreachable core is a static
%%     upstream on a port nobody listens on: always live, its link never up,
%%     so nothing here depends on timing;
%%   - an engine started with cluster_wait (a node in a cluster) holds its
%%     clients until its first cluster view and the links of that view made
%%     their first attempt: their requests are answered only then, and the
%%     `ready' check (/readyz) says why it is not ready;
%%   - a proxy that sees no live core (its view is empty) refuses publishes,
%%     and answers NOT_FOUND to a retro_subscribe: it owns nothing; clients
%%     that subscribed then are disconnected when a core appears; with
%%     owners that are not live here (docs/cluster.md, "Partitions"), a
%%     subscribe to their topics is refused (a child's link gets the
%%     error and stays);
%%   - such a proxy is not ready (the `ready' check, /readyz), nor one
%%     whose view lists cores none of whose links is up (it refuses
%%     publishes all the same); it is once one is.
%%     Driven on the engine's control channel as kraken_engine does, so the
%%     view comes exactly when the test sends it.
-module(kraken_cluster_refuse_tests).

-include_lib("eunit/include/eunit.hrl").

%% The engine's control channel, for kraken_cluster_link_tests too.
-export([call/3, packet/2]).

-import(kraken_cluster_tests, [script/3, rpc/5, wait_until/2, receive_pairs/3]).

%%% A publish for an unreachable core

unreachable_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             [{timeout, 60, {"a publish for a core whose link is not up is refused whole "
                             "(Kraken SERVER_ERROR and close, Redis -ERR), delivered nowhere, "
                             "counted in DROPPED and logged",
                             fun() -> refused(Ctx) end}},
              {timeout, 60, {"a peer's publish (another node's link, `set peer') is not "
                             "refused: what can be forwarded is, the rest counted in DROPPED",
                             fun() -> peer_not_refused(Ctx) end}},
              {timeout, 60, {"a publish through a proxy below it (q4, parents [p4]) that p4 "
                             "refuses: the publisher gets the error, q4's link to p4 and its "
                             "other clients stay", fun() -> child_refused(Ctx) end}}]
     end}.

setup() ->
    Ctx0 = kraken_cluster_tests:base_ctx("kref"),
    {U1, U1Port} = kraken_cluster_tests:standalone(kraken_cluster_tests:engine_path()),
    Dead = kraken_cluster_tests:free_port(),   % nobody listens there
    Port = kraken_cluster_tests:free_port(),
    RedisPort = kraken_cluster_tests:free_port(),
    HttpPort = kraken_cluster_tests:free_port(),
    Ctx = Ctx0#{u1 => U1, u1_port => U1Port, dead_port => Dead, port => Port,
                redis_port => RedisPort, http_port => HttpPort},
    Ups = io_lib:format("[\"127.0.0.1:~b\", \"127.0.0.1:~b\"]", [U1Port, Dead]),
    {0, Out} = script(Ctx, p4, ["start", "-kraken", "tcp_server_port", integer_to_list(Port),
                                "-kraken", "listen_ip", "\"127.0.0.1\"",
                                "-kraken", "redis_port", integer_to_list(RedisPort),
                                "-kraken", "http_port", integer_to_list(HttpPort),
                                "-kraken", "role", "proxy",
                                "-kraken", "upstreams", lists:flatten(Ups)]
                               ++ kraken_cluster_tests:engine_args()),
    {match, [P]} = re:run(Out, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
    %% q4, a proxy below p4.
    QPort = kraken_cluster_tests:free_port(),
    {0, QOut} = script(Ctx, q4, ["start", "-kraken", "tcp_server_port", integer_to_list(QPort),
                                 "-kraken", "listen_ip", "\"127.0.0.1\"",
                                 "-kraken", "role", "proxy",
                                 "-kraken", "parents",
                                 "[" ++ kraken_cluster_tests:node_name(Ctx, p4) ++ "]"]
                                ++ kraken_cluster_tests:engine_args()),
    {match, [QP]} = re:run(QOut, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
    Ctx#{os_pid => list_to_integer(P), q_os_pid => list_to_integer(QP), q_port => QPort}.

cleanup(Ctx = #{u1 := U1, os_pid := OsPid, q_os_pid := QOsPid, tmp := Tmp}) ->
    _ = script(Ctx, q4, ["stop"]),
    _ = script(Ctx, p4, ["stop"]),
    kraken_cluster_tests:sanitizer_reports(Tmp),
    [_ = os:cmd("kill -9 " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- [OsPid, QOsPid]],
    {os_pid, U1Pid} = erlang:port_info(U1, os_pid),
    _ = os:cmd("kill " ++ integer_to_list(U1Pid)),
    kraken_cluster_tests:base_cleanup(Ctx).

status(Ctx) ->
    case rpc(Ctx, p4, kraken_engine, call, [cluster_status]) of
        L when is_list(L) -> L;
        _ -> []
    end.

refused(Ctx = #{u1_port := U1Port, dead_port := Dead, port := Port, tmp := Tmp}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    DeadName = list_to_binary("127.0.0.1:" ++ integer_to_list(Dead)),
    ok = wait_until(fun() ->
                            lists:sort([{N, S =:= up orelse S =:= polling}
                                        || {N, S, _, _, _, _, _, _, _} <- status(Ctx)]) =:=
                                lists:sort([{U1Name, true}, {DeadName, false}])
                    end, 15000),
    Candidates = [list_to_binary("ref_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    Owner = fun(T) -> rpc(Ctx, p4, kraken_engine, call, [{cluster_owner, T}]) end,
    [T1 | _] = [T || T <- Candidates, Owner(T) =:= U1Name],
    [TD | _] = [T || T <- Candidates, Owner(T) =:= DeadName],
    Connect = fun(P) -> {ok, S} = kraken_client:connect({127, 0, 0, 1}, P), S end,
    S = Connect(Port), ok = kraken_client:subscribe(S, [T1]),     % on the proxy
    B = Connect(U1Port), ok = kraken_client:subscribe(B, [T1]),   % at T1's owner
    ok = wait_until(fun() ->
                            lists:sum([N || {_, _, _, _, N, _, _, _, _} <- status(Ctx)]) =:= 1
                    end, 5000),
    timer:sleep(300),   % the upstream subscription reaches U1
    %% Kraken: a block whose second entry names TD is refused whole, and the
    %% connection closes after the error line.
    P = Connect(Port),
    ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                 kraken_client:publish(P, [{[T1], <<"a">>}, {[T1, TD], <<"b">>}])),
    ?assertEqual({error, closed}, gen_tcp:recv(P, 0, 5000)),
    %% Redis: -ERR, and the connection stays usable.
    {ok, R} = gen_tcp:connect({127, 0, 0, 1}, maps:get(redis_port, Ctx),
                              [binary, {active, false}]),
    ok = gen_tcp:send(R, resp([<<"PUBLISH">>, TD, <<"r">>])),
    ?assertEqual(<<"-ERR cluster core unavailable: not published\r\n">>, recv_n(R, 46)),
    ok = gen_tcp:send(R, resp([<<"PING">>])),
    ?assertEqual(<<"+PONG\r\n">>, recv_n(R, 7)),
    %% What is published next arrives first: nothing of the refused block
    %% was delivered, locally or at the owner.
    Q = Connect(Port),
    ok = kraken_client:publish(Q, [{[T1], <<"after">>}]),
    ?assertEqual([{<<"after">>, T1}], receive_pairs(S, 1, 5000)),
    ?assertEqual([{<<"after">>, T1}], receive_pairs(B, 1, 5000)),
    ok = gen_tcp:send(R, resp([<<"PUBLISH">>, T1, <<"from redis">>])),
    ?assertEqual(<<":1\r\n">>, recv_n(R, 4)),
    ?assertEqual([{<<"from redis">>, T1}], receive_pairs(B, 1, 5000)),
    %% Redis shard channels whose names hash to static upstreams are this
    %% node's own (docs/cluster.md, "Shard channels"): no upstream
    %% subscription, and an SPUBLISH is served here whatever the link of
    %% the upstream its name hashes to (it was refused, and counted in
    %% DROPPED, as a channel's publish).
    {ok, RS} = gen_tcp:connect({127, 0, 0, 1}, maps:get(redis_port, Ctx),
                               [binary, {active, false}]),
    ok = gen_tcp:send(RS, resp([<<"SSUBSCRIBE">>, TD, T1])),
    Bulk = fun(X) -> [$$, integer_to_list(byte_size(X)), "\r\n", X, "\r\n"] end,
    SubReply = iolist_to_binary([["*3\r\n", Bulk(<<"ssubscribe">>), Bulk(X), $:, integer_to_list(I),
                                  "\r\n"] || {I, X} <- [{1, TD}, {2, T1}]]),
    ?assertEqual(SubReply, recv_n(RS, byte_size(SubReply))),
    ok = gen_tcp:send(R, resp([<<"SPUBLISH">>, TD, <<"s">>])),
    ?assertEqual(<<":1\r\n">>, recv_n(R, 4)),
    SMsg = iolist_to_binary(["*3\r\n", Bulk(<<"smessage">>), Bulk(TD), Bulk(<<"s">>)]),
    ?assertEqual(SMsg, recv_n(RS, byte_size(SMsg))),
    ?assertEqual(1, lists:sum([N || {_, _, _, _, N, _, _, _, _} <- status(Ctx)])),
    gen_tcp:close(RS),
    %% DROPPED counts the two refusals; the log says why.
    [Dropped] = [D || {N, _, _, _, _, _, _, D, _} <- status(Ctx), N =:= DeadName],
    ?assertEqual(2, Dropped),
    %% /metrics says the same, per upstream (docs/operations.md, "Metrics").
    Metrics = metrics(Ctx),
    Series = fun(Family, Name) ->
                     iolist_to_binary(["kraken_", Family, "{node=\"", Name,
                                       "\",kind=\"upstream\"} "])
             end,
    [?assertMatch({match, _}, re:run(Metrics, ["(?m)^\\Q", Series(F, N), "\\E", V, "$"]))
     || {F, N, V} <- [{"cluster_link_up", DeadName, "0"}, {"cluster_link_up", U1Name, "1"},
                      {"cluster_dropped_entries_total", DeadName, "2"},
                      {"cluster_dropped_entries_total", U1Name, "0"},
                      {"cluster_forwarded_entries_total", U1Name, "[1-9][0-9]*"},
                      {"cluster_link_connects_total", U1Name, "1"}]],
    Log = filename:join(Tmp, kraken_cluster_tests:node_name(Ctx, p4) ++ ".console.log"),
    {ok, Text} = file:read_file(Log),
    ?assertMatch({match, _}, re:run(Text, "core " ++ binary_to_list(DeadName) ++
                                        " is unreachable \\(its link is [a-z ]+\\); publishes "
                                        "to its topics are refused")),
    ?assertMatch({match, _}, re:run(Text, "SERVER_ERROR cluster core unavailable for "
                                          "\"set publish")),
    gen_tcp:close(R),
    [kraken_client:disconnect(X) || X <- [S, B, Q]],
    ok.

%% A peer's node checked reachability in its own view; ours may differ for a
%% moment (a core just joined, our link to it still connecting).  Refusing
%% its whole batch made it close the link and disconnect every holder there:
%% instead, its entries are delivered here and forwarded to the cores whose
%% links are up; the part for the others is counted as dropped.
peer_not_refused(Ctx = #{u1_port := U1Port, dead_port := Dead, port := Port}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    DeadName = list_to_binary("127.0.0.1:" ++ integer_to_list(Dead)),
    Candidates = [list_to_binary("peer_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    Owner = fun(T) -> rpc(Ctx, p4, kraken_engine, call, [{cluster_owner, T}]) end,
    [T1 | _] = [T || T <- Candidates, Owner(T) =:= U1Name],
    [TD | _] = [T || T <- Candidates, Owner(T) =:= DeadName],
    Dropped = fun() -> hd([D || {N, _, _, _, _, _, _, D, _} <- status(Ctx), N =:= DeadName])
              end,
    Connect = fun(P) -> {ok, S} = kraken_client:connect({127, 0, 0, 1}, P), S end,
    S = Connect(Port), ok = kraken_client:subscribe(S, [T1]),     % on this node
    B = Connect(U1Port), ok = kraken_client:subscribe(B, [T1]),   % at T1's owner
    timer:sleep(300),   % the upstream subscription reaches U1
    Before = Dropped(),
    P = Connect(Port),
    Name = <<"other@node">>,
    ok = gen_tcp:send(P, [<<"set peer 0 0 ">>, integer_to_binary(byte_size(Name)), <<"\r\n">>,
                          Name, <<"\r\n">>]),
    {ok, <<"STORED\r\n">>} = gen_tcp:recv(P, 0, 5000),
    ?assertEqual(ok, kraken_client:publish(P, [{[T1], <<"a">>}, {[T1, TD], <<"b">>}])),
    ?assertEqual([{<<"a">>, T1}, {<<"b">>, T1}], receive_pairs(S, 2, 5000)),
    ?assertEqual([{<<"a">>, T1}, {<<"b">>, T1}], receive_pairs(B, 2, 5000)),
    ?assertEqual(Before + 1, Dropped()),
    %% The peer's connection stays.
    ?assertEqual(ok, kraken_client:publish(P, [{[T1], <<"c">>}])),
    ?assertEqual([{<<"c">>, T1}], receive_pairs(B, 1, 5000)),
    [kraken_client:disconnect(X) || X <- [S, B, P]],
    ok.

%% A proxy below p4 (q4, `parents [p4]') forwards a publish of TD to p4,
%% which refuses it (TD's owner is unreachable from p4).  For a child p4
%% answers the error without closing the link; q4 answers its publisher with
%% the error, then closes that one connection.  q4's link to p4 stays, and so
%% do q4's other clients (before, p4 closed the link, and q4 disconnected
%% every client holding a topic through p4).
child_refused(Ctx = #{u1_port := U1Port, dead_port := Dead, q_port := QPort, tmp := Tmp}) ->
    U1Name = list_to_binary("127.0.0.1:" ++ integer_to_list(U1Port)),
    DeadName = list_to_binary("127.0.0.1:" ++ integer_to_list(Dead)),
    P4 = atom_to_binary(kraken_cluster_tests:node_atom(Ctx, p4)),
    ok = wait_until(fun() ->
                            case rpc(Ctx, q4, kraken_engine, call, [cluster_status]) of
                                [{P4, up, _, _, _, _, _, _, _}] -> true;
                                _ -> false
                            end
                    end, 15000),
    Candidates = [list_to_binary("child_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
    Owner = fun(T) -> rpc(Ctx, p4, kraken_engine, call, [{cluster_owner, T}]) end,
    [T1 | _] = [T || T <- Candidates, Owner(T) =:= U1Name],
    [TD | _] = [T || T <- Candidates, Owner(T) =:= DeadName],
    Connect = fun(P) -> {ok, S} = kraken_client:connect({127, 0, 0, 1}, P), S end,
    S = Connect(QPort), ok = kraken_client:subscribe(S, [T1]),    % on q4, through p4
    B = Connect(U1Port), ok = kraken_client:subscribe(B, [T1]),   % at T1's owner
    P = Connect(QPort),
    ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                 kraken_client:publish(P, [{[TD], <<"x">>}])),
    ?assertEqual({error, closed}, gen_tcp:recv(P, 0, 5000)),
    %% q4's other client still gets what U1 publishes; q4's link to p4 stayed.
    ok = kraken_client:publish(B, [{[T1], <<"still">>}]),
    ?assertEqual([{<<"still">>, T1}], receive_pairs(S, 1, 5000)),
    Log = filename:join(Tmp, kraken_cluster_tests:node_name(Ctx, q4) ++ ".console.log"),
    %% The engine's log line reaches the file through the logger: waited for.
    ok = wait_until(fun() ->
                            {ok, T} = file:read_file(Log),
                            re:run(T, "its publish was refused by " ++ binary_to_list(P4),
                                   [{capture, none}]) =:= match
                    end, 3000),
    {ok, Text} = file:read_file(Log),
    ?assertEqual(nomatch, re:run(Text, "upstream link to core \\S+ \\(\\S+\\) lost")),
    [kraken_client:disconnect(X) || X <- [S, B]],
    ok.

%% The /metrics page of p4.
metrics(#{http_port := HttpPort}) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, HttpPort, [binary, {active, false}]),
    ok = gen_tcp:send(S, <<"GET /metrics HTTP/1.0\r\n\r\n">>),
    Page = read_all(S, <<>>),
    gen_tcp:close(S),
    Page.

read_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, B} -> read_all(S, <<Acc/binary, B/binary>>);
        {error, closed} -> Acc
    end.

resp(Args) ->
    [io_lib:format("*~b\r\n", [length(Args)]),
     [[io_lib:format("$~b\r\n", [byte_size(A)]), A, "\r\n"] || A <- Args]].

recv_n(R, N) ->
    {ok, Bin} = gen_tcp:recv(R, N, 5000),
    Bin.

%%% Held until the first view

hold_test_() ->
    {timeout, 30, {"cluster_wait: clients held until the first cluster view and its links, "
                   "then served; not ready until then", fun hold/0}}.

hold() ->
    {Port, Listen} = held_engine(),
    {Fake, FakePort} = fake_core(),
    try
        {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Listen, [binary, {active, false}]),
        ok = gen_tcp:send(S, <<"version\r\n">>),
        %% Held: a served engine answers in a millisecond; this one says
        %% nothing while it has no view.
        ?assertEqual({error, timeout}, gen_tcp:recv(S, 0, 500)),
        {not_ready, Why} = call(Port, 1, ready),
        ?assertMatch({match, _}, re:run(Why, "waiting for the first cluster view")),
        %% A view with another core, whose link waits for its answer: still
        %% held (a publish for its topics would be refused meanwhile).
        ok = call(Port, 2, {cluster, {<<"solo">>, [{<<"solo">>, <<"127.0.0.1">>, Listen},
                                                   {<<"other">>, <<"127.0.0.1">>, FakePort}]}}),
        receive {Fake, asked} -> ok after 5000 -> error(no_link) end,
        ?assertEqual({error, timeout}, gen_tcp:recv(S, 0, 300)),
        ?assertMatch({not_ready, _}, call(Port, 3, ready)),
        %% The link is up: the client is served.
        Fake ! answer,
        {ok, <<"VERSION ", _/binary>>} = gen_tcp:recv(S, 0, 5000),
        ?assertEqual(ready, call(Port, 4, ready)),
        gen_tcp:close(S)
    after
        catch port_close(Port),
        exit(Fake, kill)
    end.

%%% A proxy that sees no live core

alone_test_() ->
    {timeout, 30, {"a proxy with no live core refuses publishes and cannot vouch for a "
                   "retro_subscribe horizon; its subscribers made without a view are "
                   "disconnected when a core appears; with a view, subscribes are refused",
                   fun alone/0}}.

alone() ->
    {Port, Listen} = held_engine(),
    {Core, CorePort} = kraken_cluster_tests:standalone(kraken_cluster_tests:engine_path()),
    try
        ok = call(Port, 1, {cluster, {<<"p">>, []}}),
        Connect = fun() -> {ok, S} = kraken_client:connect({127, 0, 0, 1}, Listen), S end,
        A = Connect(),
        ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                     kraken_client:publish(A, [{[<<"t">>], <<"x">>}])),
        B = Connect(),
        ?assertEqual({error, not_found},
                     kraken_client:retro_subscribe(B, erlang:system_time(second), [<<"t">>])),
        kraken_client:disconnect(B),
        %% Without a view it takes subscribes; when a core appears, those
        %% clients are disconnected: nothing published elsewhere reached them.
        %% (A standalone engine as the core: its link comes up and stays,
        %% so nothing else disconnects them.)
        C = Connect(),
        ?assertEqual(ok, kraken_client:subscribe(C, [<<"t">>])),
        ok = call(Port, 2, {cluster, {<<"p">>, [{<<"c1">>, <<"127.0.0.1">>, CorePort}]}}),
        {ok, Gone} = gen_tcp:recv(C, 0, 1000),
        ?assertEqual(<<"SERVER_ERROR cluster core unavailable\r\n">>, Gone),
        ?assertEqual({error, closed}, gen_tcp:recv(C, 0, 5000)),
        %% With a view whose owners are not live here (missing), a subscribe
        %% (or retro_subscribe) to their topics is refused, then the close.
        ok = call(Port, 3, {cluster, {<<"p">>, [], [], [], [<<"c1">>], [<<"c1">>]}}),
        D = Connect(),
        ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                     kraken_client:subscribe(D, [<<"t">>])),
        E = Connect(),
        ?assertEqual({error, {server_error, <<"cluster core unavailable">>}},
                     kraken_client:retro_subscribe(E, erlang:system_time(second), [<<"t">>])),
        %% A child's subscribe batch is refused the same way, but its link
        %% stays (it used to be closed: every client of the child holding a
        %% topic through this node was disconnected).
        {ok, Q} = gen_tcp:connect({127, 0, 0, 1}, Listen, [binary, {active, false}]),
        ok = gen_tcp:send(Q, <<"set child 0 0 2 noreply\r\nq1\r\nset subscribe 0 0 1\r\nt\r\n">>),
        ?assertEqual({ok, <<"SERVER_ERROR cluster core unavailable\r\n">>}, gen_tcp:recv(Q, 0, 5000)),
        ok = gen_tcp:send(Q, <<"version\r\n">>),
        ?assertMatch({ok, <<"VERSION ", _/binary>>}, gen_tcp:recv(Q, 0, 5000)),
        gen_tcp:close(Q)
    after
        catch port_close(Port),
        {os_pid, CorePid} = erlang:port_info(Core, os_pid),
        _ = os:cmd("kill " ++ integer_to_list(CorePid))
    end.

%%% Ready only with a core to send to

unlinked_test_() ->
    {timeout, 30, {"a proxy is not ready while it sees no live core, nor while none of its "
                   "cores' links is up (it refuses every publish then either); ready once "
                   "one is, not ready again once that one's link is lost",
                   fun unlinked/0}}.

unlinked() ->
    {Port, _} = held_engine(),
    {Core, CorePort} = kraken_cluster_tests:standalone(kraken_cluster_tests:engine_path()),
    {os_pid, CorePid} = erlang:port_info(Core, os_pid),
    Dead = kraken_cluster_tests:free_port(),   % nobody listens there
    Ready = fun() -> call(Port, erlang:unique_integer([positive]), ready) end,
    NotReady = fun(Re) ->
                       case Ready() of
                           {not_ready, Why} -> re:run(Why, Re, [{capture, none}]) =:= match;
                           ready -> false
                       end
               end,
    Unlinked = "no link to a core of the cluster is up here",
    try
        ok = call(Port, 1, {cluster, {<<"p">>, []}}),
        ?assert(NotReady("no core of the cluster is live here")),
        %% A live core (its node heard) whose engine cannot be reached:
        %% every publish is refused, as with no core at all (it said ready).
        ok = call(Port, 2, {cluster, {<<"p">>, [{<<"c9">>, <<"127.0.0.1">>, Dead}]}}),
        timer:sleep(700),   % two attempts at the link (every 300 ms)
        ?assert(NotReady(Unlinked)),
        %% Another core, whose link comes up: it serves that core's topics.
        ok = call(Port, 3, {cluster, {<<"p">>, [{<<"c9">>, <<"127.0.0.1">>, Dead},
                                                {<<"c1">>, <<"127.0.0.1">>, CorePort}]}}),
        ok = wait_until(fun() -> Ready() =:= ready end, 5000),
        %% That core's engine gone (its node still heard): not ready again.
        _ = os:cmd("kill " ++ integer_to_list(CorePid)),
        ok = wait_until(fun() -> NotReady(Unlinked) end, 5000)
    after
        catch port_close(Port),
        _ = os:cmd("kill " ++ integer_to_list(CorePid) ++ " 2>/dev/null")
    end.

%%% A view gone stale

stale_test_() ->
    {timeout, 30, {"a view gone stale (no confirmation for 1.5 s) disconnects the holders of "
                   "shard channels a core would own, not those of shard channels a static "
                   "upstream would own: those are served here (docs/cluster.md, \"Shard "
                   "channels\")", fun stale_shards/0}}.

stale_shards() ->
    RedisPort = kraken_cluster_tests:free_port(),
    {Port, _} = held_engine([{redis_port, RedisPort}]),
    {Core, CorePort} = kraken_cluster_tests:standalone(kraken_cluster_tests:engine_path()),
    {Up, UpPort} = kraken_cluster_tests:standalone(kraken_cluster_tests:engine_path()),
    UpName = list_to_binary("127.0.0.1:" ++ integer_to_list(UpPort)),
    try
        ok = call(Port, 1, {cluster, {<<"p">>, [{<<"c1">>, <<"127.0.0.1">>, CorePort},
                                                 {UpName, <<"127.0.0.1">>, UpPort, 1000}]}}),
        pong = call(Port, 2, cluster_fresh),   % from now on the view can go stale
        Names = [list_to_binary("stale_" ++ integer_to_list(I)) || I <- lists:seq(1, 60)],
        Owners = [{call(Port, 10 + I, {cluster_owner, T}), T}
                  || {I, T} <- lists:zip(lists:seq(1, length(Names)), Names)],
        [TU | _] = [T || {O, T} <- Owners, O =:= UpName],
        [TC | _] = [T || {O, T} <- Owners, O =:= <<"c1">>],
        Sub = fun(T) ->
                      {ok, R} = gen_tcp:connect({127, 0, 0, 1}, RedisPort,
                                                [binary, {active, false}]),
                      ok = gen_tcp:send(R, resp([<<"SSUBSCRIBE">>, T])),
                      Reply = iolist_to_binary(["*3\r\n$10\r\nssubscribe\r\n",
                                                resp_bulk(T), ":1\r\n"]),
                      ?assertEqual(Reply, recv_n(R, byte_size(Reply))),
                      R
              end,
        RU = Sub(TU),
        RC = Sub(TC),
        %% No confirmation from now on: after 1.5 s the view is stale.
        ?assertEqual({error, closed}, gen_tcp:recv(RC, 0, 5000)),
        ok = gen_tcp:send(RU, resp([<<"PING">>])),
        Pong = <<"*2\r\n$4\r\npong\r\n$0\r\n\r\n">>,
        ?assertEqual(Pong, recv_n(RU, byte_size(Pong))),
        gen_tcp:close(RU)
    after
        catch port_close(Port),
        [begin
             {os_pid, Pid} = erlang:port_info(E, os_pid),
             os:cmd("kill " ++ integer_to_list(Pid))
         end || E <- [Core, Up]]
    end.

resp_bulk(X) ->
    [$$, integer_to_list(byte_size(X)), "\r\n", X, "\r\n"].

%% An engine started as kraken_engine starts it on a node in a cluster.
held_engine() ->
    held_engine([]).

held_engine(Extra) ->
    Port = open_port({spawn_executable, kraken_cluster_tests:engine_path()},
                     [{packet, 4}, binary, exit_status, use_stdio, {args, []}]),
    true = port_command(Port, term_to_binary({config, [{tcp_server_port, 0},
                                                       {listen_ip, <<"127.0.0.1">>},
                                                       {cluster_wait, 1} | Extra]})),
    {ready, Listen} = packet(Port, fun({ready, _}) -> true; (_) -> false end),
    {Port, Listen}.

%% A "core" that accepts the link, reads its handshake (set push, version),
%% tells the test, and answers VERSION when told to.
fake_core() ->
    Self = self(),
    Pid = spawn(fun() ->
                        {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}},
                                                     {active, false}]),
                        {ok, P} = inet:port(L),
                        Self ! {fake_port, P},
                        {ok, C} = gen_tcp:accept(L),
                        fake_read(C, <<>>),
                        Self ! {self(), asked},
                        receive answer -> ok end,
                        ok = gen_tcp:send(C, <<"VERSION 1.0.0\r\n">>),
                        receive never -> ok end
                end),
    receive {fake_port, P} -> {Pid, P} after 5000 -> error(fake_core) end.

fake_read(C, Buf) ->
    case binary:match(Buf, <<"version\r\n">>) of
        nomatch -> {ok, More} = gen_tcp:recv(C, 0), fake_read(C, <<Buf/binary, More/binary>>);
        _ -> ok
    end.

call(Port, Ref, Request) ->
    true = port_command(Port, term_to_binary({call, Ref, Request})),
    {reply, Ref, Result} = packet(Port, fun({reply, R, _}) -> R =:= Ref; (_) -> false end),
    Result.

%% The next packet from the engine that Want accepts (log events skipped).
packet(Port, Want) ->
    receive
        {Port, {data, Bin}} ->
            T = binary_to_term(Bin),
            case Want(T) of
                true -> T;
                false -> packet(Port, Want)
            end;
        {Port, {exit_status, St}} ->
            error({engine_exited, St})
    after 10000 ->
            error(engine_timeout)
    end.
