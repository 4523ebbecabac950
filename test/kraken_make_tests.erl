%% @doc Tests of the Makefile itself: goals that build nothing never run
%% the dependency installer, and `make run PORT=...' chooses the port.
-module(kraken_make_tests).

-include_lib("eunit/include/eunit.hrl").

%% `make clean', `make -n clean' and `make help' must not make
%% build/deps.mk (whose recipe runs apt-get when something is missing):
%% run in a directory holding only a copy of the Makefile, they leave no
%% build/ behind. `make -n deps' does make it (the check sees the difference).
no_installer_for_clean_test_() ->
    {timeout, 60,
     fun() ->
             Dir = tmp_dir("make_clean"),
             try
                 {ok, _} = file:copy("Makefile", filename:join(Dir, "Makefile")),
                 DepsMk = filename:join([Dir, "build", "deps.mk"]),
                 [begin
                      {Status, Out} = make(Dir, Args),
                      ?assertEqual({Args, 0}, {Args, Status}),
                      ?assertEqual({Args, nomatch}, {Args, string:find(Out, "missing:")}),
                      ?assertEqual({Args, false}, {Args, filelib:is_file(DepsMk)})
                  end || Args <- [["-n", "clean"], ["clean"], ["help"], ["-n", "help"]]],
                 {0, _} = make(Dir, ["-n", "deps"]),
                 ?assert(filelib:is_file(DepsMk))
             after
                 os:cmd("rm -rf '" ++ Dir ++ "'")
             end
     end}.

%% `make run PORT=P' starts the server on port P (`-o all': the build is
%% this test run's; RUN_ARGS=-noshell since there is no terminal).
run_port_test_() ->
    {timeout, 60,
     fun() ->
             Port = free_port(),
             Dir = tmp_dir("make_run"),
             Node = "kraken_make_" ++ os:getpid(),
             Env = [{"KRAKEN_EBIN", filename:dirname(code:which(kraken))},
                    {"KRAKEN_NODE_NAME", Node}, {"KRAKEN_LOG_DIR", Dir}],
             Engine = case os:getenv("KRAKEN_ENGINE") of
                          false -> "";
                          "" -> "";
                          Path -> " -kraken engine_executable '\"" ++ Path ++ "\"'"
                      end,
             Make = open_port({spawn_executable, os:find_executable("make")},
                              [{args, ["--no-print-directory", "-o", "all", "run",
                                       "PORT=" ++ integer_to_list(Port),
                                       "RUN_ARGS=-noshell -kraken listen_ip '\"127.0.0.1\"'" ++
                                           Engine]},
                               {env, Env}, exit_status, stderr_to_stdout, binary]),
             try
                 wait_until(fun() -> can_connect(Port) end, 20000),
                 {ok, C} = kraken_client:connect({127, 0, 0, 1}, Port),
                 ok = kraken_client:disconnect(C)
             after
                 _ = script(Env, ["stop"]),
                 receive {Make, {exit_status, _}} -> ok after 20000 -> ok end,
                 os:cmd("rm -rf '" ++ Dir ++ "'")
             end,
             %% The port variable is documented in `make help'.
             {0, Help} = make(".", ["--no-print-directory", "help"]),
             ?assertNotEqual(nomatch, string:find(Help, "PORT="))
     end}.

%%% Helpers

tmp_dir(Name) ->
    Dir = filename:join("/tmp", "kraken_" ++ Name ++ "_" ++ os:getpid()),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

make(Dir, Args) ->
    run(os:find_executable("make"), Args, [{cd, Dir}]).

script(Env, Args) ->
    run(filename:absname("bin/kraken"), Args, [{env, Env}]).

run(Exe, Args, Opts) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary | Opts]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, binary_to_list(iolist_to_binary(lists:reverse(Acc)))}
    after 60000 -> error(timeout)
    end.

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port.

can_connect(Port) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 1000) of
        {ok, S} -> gen_tcp:close(S), true;
        {error, _} -> false
    end.

wait_until(F, Ms) when Ms =< 0 ->
    ?assert(F());
wait_until(F, Ms) ->
    case F() of
        true -> ok;
        false -> timer:sleep(50), wait_until(F, Ms - 50)
    end.
