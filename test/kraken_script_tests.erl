%% @doc Tests of bin/kraken: start (returning once the server listens),
%% status exit codes, the admin commands (and their usage errors), `run'
%% refused while the node is up, pid_file, stop, and the one-line reason of
%% a failed start. The script runs the code of this test build
%% (KRAKEN_EBIN) on a node named after the test's OS pid.
-module(kraken_script_tests).

-include_lib("eunit/include/eunit.hrl").

%% help, --help, -h: usage on stdout, exit 0, naming every command, every
%% option of the configuration and the environment variables; an unknown
%% command is named in the error (exit 3). No node needed.
help_test() ->
    Ctx = setup_env(),
    Helps = [run_stdout(Ctx, [H]) || H <- ["help", "--help", "-h"]],
    [{0, Help} | _] = Helps,
    ?assertEqual([Help, Help, Help], [T || {0, T} <- Helps]),
    [?assertNotEqual({nomatch, W}, {string:find(Help, W), W})
     || W <- ["run", "start", "stop", "status", "stats", "publish", "tail",
              "change_log_level", "dump_queues", "dump_queue_topics", "dump_topics",
              "cluster_status", "-kraken NAME VALUE", "-config", "KRAKEN_NODE_NAME",
              "KRAKEN_LOG_DIR", "KRAKEN_EBIN", "ERL_FLAGS", "docs/operations.md"]
            ++ [atom_to_list(K) || {K, _} <- kraken_config:defaults()]],
    ?assertEqual({3, "kraken: unknown command 'foo' (see bin/kraken help)\n"},
                 run(Ctx, ["foo"])),
    ?assertEqual({3, ""}, run_stdout(Ctx, ["foo"])),
    ?assertMatch({3, "Usage: " ++ _}, run(Ctx, ["publish"])),
    ?assertMatch({3, "Usage: " ++ _}, run(Ctx, ["tail"])).

%% Stdout alone (stderr to the test's own).
run_stdout(#{script := Script, env := Env, node := Node}, Args) ->
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", "\"$0\" \"$@\" 2>/dev/null", Script | Args]},
                      {env, [{"KRAKEN_NODE_NAME", Node} | Env]}, exit_status, binary]),
    collect(Port, []).

script_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             [{timeout, 60, {"start, admin commands, stop", fun() -> lifecycle(Ctx) end}},
              {timeout, 30, {"failed start", fun() -> failed_start(Ctx) end}}]
     end}.

setup() ->
    Ctx = #{tmp := Tmp} = setup_env(),
    ok = filelib:ensure_dir(filename:join(Tmp, "x")),
    Ctx.

setup_env() ->
    Tmp = filename:join(["/tmp", "kraken_script_test_" ++ os:getpid()]),
    Ebin = filename:dirname(code:which(kraken)),
    Script = filename:absname("bin/kraken"),
    true = filelib:is_regular(Script),
    Engine = case os:getenv("KRAKEN_ENGINE") of
                 false -> [];
                 "" -> [];
                 Path -> ["-kraken", "engine_executable", "\"" ++ Path ++ "\""]
             end,
    #{tmp => Tmp, script => Script, node => "kraken_test_" ++ os:getpid(),
      env => [{"KRAKEN_EBIN", Ebin}, {"KRAKEN_LOG_DIR", Tmp}], engine => Engine}.

cleanup(#{tmp := Tmp} = Ctx) ->
    _ = run(Ctx, ["stop"]),
    _ = os:cmd("rm -rf '" ++ Tmp ++ "'"),
    ok.

%% Runs bin/kraken with arguments; returns {ExitStatus, Output}.
run(#{script := Script, env := Env, node := Node}, Args) ->
    run(Script, [{"KRAKEN_NODE_NAME", Node} | Env], Args).

run(Script, Env, Args) ->
    Port = open_port({spawn_executable, Script},
                     [{args, Args}, {env, Env}, exit_status, stderr_to_stdout, binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, binary_to_list(iolist_to_binary(lists:reverse(Acc)))}
    after 60000 -> error(script_timeout)
    end.

lifecycle(Ctx = #{tmp := Tmp, engine := Engine}) ->
    PidFile = filename:join(Tmp, "kraken.pid"),
    ?assertMatch({1, _}, run(Ctx, ["status"])),
    {0, Started} = run(Ctx, ["start", "-kraken", "tcp_server_port", "0",
                             "-kraken", "listen_ip", "\"127.0.0.1\"",
                             "-kraken", "pid_file", "\"" ++ PidFile ++ "\""] ++ Engine),
    {match, [NodeName, PortStr, OsPid]} =
        re:run(Started, "on node (\\S+), listening on port (\\d+) \\(os pid (\\d+)\\)",
               [{capture, all_but_first, list}]),
    Port = list_to_integer(PortStr),
    ?assertEqual({ok, list_to_binary(OsPid ++ "\n")}, file:read_file(PidFile)),
    {0, Status} = run(Ctx, ["status"]),
    ?assertNotEqual(nomatch, string:find(Status, "is running")),
    %% A client shows up in the dumps.
    {ok, C} = kraken_client:connect({127, 0, 0, 1}, Port),
    ok = kraken_client:subscribe(C, [<<"script_topic">>, <<"other">>, <<"Zed">>, <<"b">>]),
    {ok, {_, LocalPort}} = inet:sockname(C),
    {0, Queues} = run(Ctx, ["dump_queues"]),
    Peer = "127.0.0.1:" ++ integer_to_list(LocalPort),
    [Row] = [L || L <- string:split(Queues, "\n", all), string:find(L, Peer) =/= nomatch],
    [Id, Peer, "4" | _] = string:lexemes(Row, " "),
    %% The topics in byte order.
    ?assertEqual({0, "Zed\nb\nother\nscript_topic\n"}, run(Ctx, ["dump_queue_topics", Id])),
    ?assertEqual({3, "kraken: no client queue with id 123456789\n"},
                 run(Ctx, ["dump_queue_topics", "123456789"])),
    %% An id beyond what the engine decodes is no client queue's either.
    ?assertEqual({3, "kraken: no client queue with id 99999999999999999999\n"},
                 run(Ctx, ["dump_queue_topics", "99999999999999999999"])),
    %% Extra arguments after the id or the level are a usage error.
    ?assertMatch({3, "Usage: " ++ _}, run(Ctx, ["dump_queue_topics", Id, "extra"])),
    ?assertMatch({3, "Usage: " ++ _}, run(Ctx, ["change_log_level", "debug", "extra"])),
    %% `run' while the node is up is refused as a second `start' is.
    ?assertEqual({1, "kraken: node " ++ NodeName ++ " is already running (os pid " ++
                      OsPid ++ ")\n"},
                 run(Ctx, ["run", "-noshell", "-kraken", "tcp_server_port", "0"] ++ Engine)),
    {0, Topics} = run(Ctx, ["dump_topics"]),
    ?assertMatch(["TOPIC", "TAB", "SUBSCRIBERS"], string:lexemes(hd(string:split(Topics, "\n")), " ")),
    ?assertNotEqual(nomatch, string:find(Topics, "script_topic")),
    cli(Ctx, C),
    ?assertMatch({0, "log level set to debug\n"}, run(Ctx, ["change_log_level", "debug"])),
    %% Every error of the script begins with "kraken: ".
    ?assertEqual({3, "kraken: bad log level loud (expected debug, info, warn or error)\n"},
                 run(Ctx, ["change_log_level", "loud"])),
    ?assertEqual({3, "kraken: bad queue id abc (expected an id from dump_queues)\n"},
                 run(Ctx, ["dump_queue_topics", "abc"])),
    ?assertEqual({3, "kraken: node " ++ NodeName ++ " is not in a cluster (role core, no "
                     "cluster_nodes)\n"},
                 run(Ctx, ["cluster_status"])),
    ok = kraken_client:disconnect(C),
    ?assertMatch({0, _}, run(Ctx, ["stop"])),
    ?assertEqual(false, filelib:is_regular(PidFile)),
    ?assertMatch({1, _}, run(Ctx, ["status"])),
    ?assertMatch({1, _}, run(Ctx, ["dump_topics"])),
    ?assertMatch({1, "kraken: node " ++ _}, run(Ctx, ["publish", "t", "-m", "x"])),
    ?assertMatch({1, "kraken: node " ++ _}, run(Ctx, ["stats"])),
    ?assertMatch({1, "kraken: node " ++ _}, run(Ctx, ["tail", "t"])).

failed_start(Ctx = #{engine := Engine}) ->
    Msg = "kraken: bad value for option tcp_server_port: 70000 (expected an integer 0..65535)",
    {1, Out} = run(Ctx, ["start", "-kraken", "tcp_server_port", "70000"] ++ Engine),
    ?assertNotEqual(nomatch, string:find(Out, Msg)),
    %% `run' prints the reason alone and exits non-zero.
    ?assertEqual({1, Msg ++ "\n"},
                 run(Ctx, ["run", "-noshell", "-kraken", "tcp_server_port", "70000"] ++ Engine)),
    ?assertMatch({1, _}, run(Ctx, ["status"])).

%% publish (-m, and stdin byte for byte) to a subscriber that polls; stats;
%% tail receiving two messages published after it started, until SIGINT.
cli(Ctx, C) ->
    _ = kraken_client:receive_messages(C),
    ?assertEqual({0, ""}, run(Ctx, ["publish", "script_topic", "b", "-m", "hello there"])),
    ?assertEqual([{[<<"script_topic">>, <<"b">>], <<"hello there">>}],
                 kraken_client:receive_messages(C)),
    #{script := Script, env := Env, node := Node} = Ctx,
    ?assertEqual({0, ""}, run("/bin/sh", [{"KRAKEN_NODE_NAME", Node} | Env],
                              ["-c", "printf 'a\\000b\\n' | \"$0\" publish other", Script])),
    ?assertEqual([{[<<"other">>], <<"a", 0, "b\n">>}], kraken_client:receive_messages(C)),
    {0, Stats} = run(Ctx, ["stats"]),
    [?assertMatch({match, _}, re:run(Stats, "^" ++ Name ++ " +\\d+$", [multiline]))
     || Name <- ["curr_connections", "uptime", "engine_os_pid"]],
    %% tail: started, then two entries published; one line each.
    Port = open_port({spawn_executable, Script},
                     [{args, ["tail", "tail_a", "tail_b"]},
                      {env, [{"KRAKEN_NODE_NAME", Node} | Env]},
                      exit_status, stderr_to_stdout, binary, {line, 1000}]),
    {os_pid, TailPid} = erlang:port_info(Port, os_pid),
    "kraken: tailing tail_a tail_b on node " ++ _ = tail_line(Port),
    {ok, Pub} = kraken_client:connect({127, 0, 0, 1}, kraken_port(C)),
    ok = kraken_client:publish(Pub, [{[<<"tail_a">>], <<"first">>},
                                     {[<<"tail_b">>, <<"tail_a">>, <<"x">>], <<"two\tlines\n">>}]),
    ok = kraken_client:disconnect(Pub),
    L1 = tail_line(Port),
    L2 = tail_line(Port),
    Iso = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d+Z",
    ?assertMatch({match, _}, re:run(L1, "^" ++ Iso ++ " tail_a first$")),
    ?assertMatch({{match, _}, _},
                 {re:run(L2, "^" ++ Iso ++ " tail_b,tail_a two\\\\x09lines\\\\x0a$"), L2}),
    os:cmd("kill -INT " ++ integer_to_list(TailPid)),
    receive {Port, {exit_status, S}} -> ?assertEqual(128 + 2, S)
    after 10000 -> error(tail_did_not_stop)
    end.

tail_line(Port) ->
    receive {Port, {data, {eol, Line}}} -> binary_to_list(Line);
            {Port, {exit_status, S}} -> error({tail_exited, S})
    after 10000 -> error(tail_timeout)
    end.

kraken_port(C) ->
    {ok, {_, P}} = inet:peername(C),
    P.
