%% @doc Operations parity (SPEC sections 2 and 3), tested on real nodes
%% started by bin/kraken, plus the listen_ip forms on the real application:
%%
%%   - the script: default node name, a symlink, any working directory,
%%     `run' in the foreground, status exit codes 0, 1 and 2;
%%   - every SPEC section 2 option from -kraken flags and from a -config
%%     file, and the `octopus' section (with its warning);
%%   - bad values, a -kraken flag without its value and an unparsable
%%     -config file refused with one line by `start' and `run -noshell';
%%   - logging: console by default, log_file, log_level, change_log_level
%%     reaching the engine, the fan-out warnings;
%%   - pid_file;
%%   - supervision: kill -9 of the engine, stopping the application,
%%     kill -9 of the node, an engine that keeps dying.
%%
%% This node becomes a distributed node (kraken_ops_test_<os pid>) to make
%% rpc calls to the script's nodes. The script runs this test build's code
%% (KRAKEN_EBIN) except where the test is about finding it.
-module(kraken_ops_tests).

-include_lib("eunit/include/eunit.hrl").

%% log/2 is the logger handler callback session_log_wording_test_/0 uses.
-export([log/2]).

-define(WAIT, 5000).

%%% Fixtures

ops_test_() ->
    {setup, fun setup/0, fun cleanup/1,
     fun(Ctx) ->
             [{timeout, 30, {"default node name, symlink, any directory",
                             fun() -> default_name_symlink(Ctx) end}},
              {timeout, 60, {"every option from -kraken flags (IPv6), status 2, "
                             "application stop", fun() -> flags_node(Ctx) end}},
              {timeout, 60, {"every option from a -config file (IPv4 tuple), logging, "
                             "engine kill -9, pid_file", fun() -> config_node(Ctx) end}},
              {timeout, 30, {"run: octopus section, console logging, node kill -9",
                             fun() -> run_octopus(Ctx) end}},
              {timeout, 30, {"an engine that keeps dying halts the node",
                             fun() -> give_up(Ctx) end}},
              {timeout, 60, {"bad values refused by start and run -noshell",
                             fun() -> bad_values(Ctx) end}},
              {timeout, 60, {"warnings on the terminal, log contents, pid_file owner, "
                             "application stopped, engine restart count",
                             fun() -> lifecycle_details(Ctx) end}}]
     end}.

%% listen_ip forms, on the application started in this node.
listen_ip_test_() ->
    {setup, fun() -> application:stop(kraken) end, fun(_) -> application:stop(kraken) end,
     [{lists:flatten(io_lib:format("listen_ip ~0p", [Ip])),
       fun() -> listen_ip(Ip, Yes, No) end}
      || {Ip, Yes, No} <- [{"::1", [ipv6], [ipv4]},
                           {{0, 0, 0, 0, 0, 0, 0, 1}, [ipv6], [ipv4]},
                           {<<"::1">>, [ipv6], [ipv4]},
                           {{127, 0, 0, 1}, [ipv4], [ipv6]},
                           {"127.0.0.1", [ipv4], [ipv6]},
                           {any, [ipv4], [ipv6]},
                           {"::", [ipv4, ipv6], []}]]}.

setup() ->
    Tmp = filename:join(["/tmp", "kraken_ops_test_" ++ os:getpid()]),
    ok = filelib:ensure_dir(filename:join(Tmp, "x")),
    Script = filename:absname("bin/kraken"),
    true = filelib:is_regular(Script),
    Ebin = filename:dirname(code:which(kraken)),
    Engine = case os:getenv("KRAKEN_ENGINE") of
                 false -> [];
                 "" -> [];
                 Path -> ["-kraken", "engine_executable", quote(Path)]
             end,
    %% Distribution, for rpc to the script's nodes (epmd is started as erl does).
    _ = os:cmd("epmd -daemon"),
    Distributed = case node() of
                      nonode@nohost ->
                          {ok, _} = net_kernel:start([list_to_atom("kraken_ops_test_" ++
                                                                       os:getpid()),
                                                      shortnames]),
                          true;
                      _ ->
                          false
                  end,
    [_, Host] = string:split(atom_to_list(node()), "@"),
    #{tmp => Tmp, script => Script, ebin => Ebin, engine => Engine, host => Host,
      distributed => Distributed, prefix => "kraken_ops_" ++ os:getpid()}.

cleanup(Ctx = #{tmp := Tmp, distributed := Distributed}) ->
    %% Stop whatever node a failed test left behind.
    [_ = script(Ctx, Name, ["stop"])
     || Name <- ["flags", "config", "run", "give_up", "details", "details2"]],
    Distributed andalso net_kernel:stop(),
    _ = os:cmd("rm -rf '" ++ Tmp ++ "'"),
    ok.

%%% Running the script

%% Runs bin/kraken for the node named Name (a suffix); returns
%% {ExitStatus, Output}.
script(Ctx, Name, Args) ->
    script(Ctx, Name, Args, []).

%% Options: {cwd, Dir}, {script, Path}, no_ebin (find the code from the
%% script's location), no_node (the default node name).
script(Ctx = #{script := Script0, tmp := Tmp, ebin := Ebin}, Name, Args, Opts) ->
    Script = proplists:get_value(script, Opts, Script0),
    Env = [{"KRAKEN_LOG_DIR", Tmp}] ++
        case proplists:get_bool(no_ebin, Opts) of
            true -> [{"KRAKEN_EBIN", false}];
            false -> [{"KRAKEN_EBIN", proplists:get_value(ebin, Opts, Ebin)}]
        end ++
        case proplists:get_bool(no_node, Opts) of
            true -> [{"KRAKEN_NODE_NAME", false}];
            false -> [{"KRAKEN_NODE_NAME", node_name(Ctx, Name)}]
        end,
    Port = open_port({spawn_executable, Script},
                     [{args, Args}, {env, Env}, {cd, proplists:get_value(cwd, Opts, Tmp)},
                      exit_status, stderr_to_stdout, binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, binary_to_list(iolist_to_binary(lists:reverse(Acc)))}
    after 60000 -> error(script_timeout)
    end.

%% F over Xs, each in its own process; the results in order.
pmap(F, Xs) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Self ! {self(), F(X)} end) || X <- Xs],
    [receive {P, R} -> R end || P <- Pids].

node_name(#{prefix := Prefix}, Name) ->
    Prefix ++ "_" ++ Name.

node_atom(Ctx = #{host := Host}, Name) ->
    list_to_atom(node_name(Ctx, Name) ++ "@" ++ Host).

%% A -kraken value for a string.
quote(S) ->
    "\"" ++ S ++ "\"".

%% `bin/kraken start', which must succeed; returns the node's OS pid.
start(Ctx = #{engine := Engine}, Name, Args, Opts) ->
    {Status, Out} = script(Ctx, Name, ["start" | Args] ++ Engine, Opts),
    ?assertEqual({0, Out}, {Status, Out}),
    {match, [OsPid]} = re:run(Out, "listening on port \\d+ \\(os pid (\\d+)\\)",
                              [{capture, all_but_first, list}]),
    list_to_integer(OsPid).

%%% OS processes, ports, files

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port.

%% Whether an OS process exists and is not a zombie.
alive(OsPid) ->
    kraken_engine:os_process_alive(OsPid).

kill9(OsPid) ->
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    ok.

%% Polls F until it returns true, for at most Ms; returns the time it took.
wait_until(F, Ms) ->
    T0 = erlang:monotonic_time(millisecond),
    wait_until(F, T0, T0 + Ms).

wait_until(F, T0, Deadline) ->
    case F() of
        true ->
            erlang:monotonic_time(millisecond) - T0;
        false ->
            Now = erlang:monotonic_time(millisecond),
            case Now > Deadline of
                true -> error({timeout, Now - T0});
                false -> timer:sleep(5), wait_until(F, T0, Deadline)
            end
    end.

can_connect(Ip, Port) ->
    case gen_tcp:connect(Ip, Port, [binary, {active, false}], 1000) of
        {ok, S} -> gen_tcp:close(S), true;
        {error, _} -> false
    end.

%% Whether this address and port can be bound (nothing listens there).
port_free(Ip, Port) ->
    Family = case tuple_size(Ip) of 4 -> inet; 8 -> inet6 end,
    case gen_tcp:listen(Port, [Family, {ip, Ip}, {reuseaddr, true}]) of
        {ok, L} -> gen_tcp:close(L), true;
        {error, _} -> false
    end.

read(File) ->
    case file:read_file(File) of
        {ok, Bin} -> binary_to_list(Bin);
        {error, _} -> ""
    end.

%% Whether Text matches the regular expression (^ and $ match at lines).
has(Text, Pattern) ->
    re:run(Text, Pattern, [multiline, {capture, none}]) =:= match.

%% Waits until the file has a line matching the regular expression.
wait_log(File, Pattern) ->
    _ = wait_until(fun() -> has(read(File), Pattern) end, ?WAIT),
    ok.

%% Waits until the file has N lines matching the regular expression.
wait_count(File, Pattern, N) ->
    _ = wait_until(fun() -> length(lines(read(File), Pattern)) >= N end, ?WAIT),
    ok.

%% The lines of Text matching Pattern.
lines(Text, Pattern) ->
    [L || L <- string:split(Text, "\n", all), has(L, Pattern)].

rpc(Node, M, F, A) ->
    rpc:call(Node, M, F, A, 10000).

%% Waits until the engine of Node has at most N clients (it noticed the
%% others leave), so that max_tcp_clients lets the next one in.
settle(Node, N) ->
    _ = wait_until(fun() -> length(rpc(Node, kraken_engine, call, [dump_queues])) =< N end,
                   ?WAIT),
    ok.

%% A client connected to the server, with its local port.
client(Ip, Port) ->
    {ok, C} = kraken_client:connect(Ip, Port),
    {ok, {_, Local}} = inet:sockname(C),
    {C, Local}.

%% Sends raw bytes and reads one reply line.
raw(Ip, Port, Bytes) ->
    {ok, S} = gen_tcp:connect(Ip, Port, [binary, {active, false}, {packet, line}]),
    ok = gen_tcp:send(S, Bytes),
    {ok, Line} = gen_tcp:recv(S, 0, ?WAIT),
    {ok, {_, Local}} = inet:sockname(S),
    gen_tcp:close(S),
    {Line, Local}.

%%% 1. The script: default node name, symlink, working directory

default_name_symlink(Ctx = #{tmp := Tmp, host := Host, script := Script}) ->
    Link = filename:join([Tmp, "links", "kraken"]),
    ok = filelib:ensure_dir(Link),
    ok = file:make_symlink(Script, Link),
    %% Through a symlink, from /, the code found from the script's real
    %% location, the node name kraken@<short hostname>. (A developer's
    %% `make run' may be running: then the status is 0.)
    {Status, Out} = script(Ctx, "", ["status"], [{script, Link}, {cwd, "/"}, no_ebin, no_node]),
    ?assert(lists:member(Status, [0, 1])),
    ?assert(has(Out, "\\bkraken@" ++ Host ++ "\\b")),
    ?assertEqual(nomatch, string:find(Host, ".")),
    %% Bad usage.
    ?assertEqual({3, "kraken: unknown command 'frobnicate' (see bin/kraken help)\n"},
                 script(Ctx, "x", ["frobnicate"])),
    ?assertMatch({3, "Usage: " ++ _}, script(Ctx, "x", ["dump_queue_topics"])),
    ?assertMatch({3, "Usage: " ++ _}, script(Ctx, "x", [])).

%%% 2. Every option from -kraken flags; IPv6; status 2; application stop

flags_node(Ctx = #{tmp := Tmp, script := Script}) ->
    Link = filename:join([Tmp, "flags_link"]),
    ok = file:make_symlink(Script, Link),
    Port = free_port(),
    PidFile = filename:join(Tmp, "flags.pid"),
    LogFile = filename:join(Tmp, "flags.log"),
    V6 = {0, 0, 0, 0, 0, 0, 0, 1},
    Node = node_atom(Ctx, "flags"),
    Flags = ["-kraken", "listen_ip", quote("::1"),
             "-kraken", "tcp_server_port", integer_to_list(Port),
             "-kraken", "max_tcp_clients", "3",
             "-kraken", "num_router_shards", "3",
             "-kraken", "messages_stored_per_router_shard", "5",
             "-kraken", "router_min_fanout_to_warn", "2",
             "-kraken", "router_min_publish_to_topics_to_warn", "3",
             "-kraken", "pid_file", quote(PidFile),
             "-kraken", "log_file", quote(LogFile),
             "-kraken", "log_level", "warn"],
    %% Through a symlink, from /.
    OsPid = start(Ctx, "flags", Flags, [{script, Link}, {cwd, "/"}]),
    %% start returned: the server accepts connections, on ::1 only.
    {Sub1, _} = client(V6, Port),
    ?assertNot(can_connect({127, 0, 0, 1}, Port)),
    ?assertEqual({ok, <<(integer_to_binary(OsPid))/binary, "\n">>}, file:read_file(PidFile)),
    ?assertEqual(OsPid, list_to_integer(os_pid_of(script(Ctx, "flags", ["status"])))),
    %% A second start is refused.
    ?assertEqual({1, "kraken: node " ++ atom_to_list(Node) ++ " is already running (os pid " ++
                      integer_to_list(OsPid) ++ ")\n"},
                 script(Ctx, "flags", ["start" | Flags])),
    %% max_tcp_clients 3.
    {Sub2, _} = client(V6, Port),
    {Pub, PubPort} = client(V6, Port),
    ?assertMatch({<<"SERVER_ERROR Too many clients\r\n">>, _}, raw(V6, Port, <<>>)),
    %% num_router_shards 3, messages_stored_per_router_shard 5: 60 topics
    %% spread over shards 0..2, and 5 entries kept in each.
    Topics = [<<"flag_t", (integer_to_binary(N))/binary>> || N <- lists:seq(1, 60)],
    ok = kraken_client:subscribe(Sub1, Topics),
    ok = kraken_client:publish(Pub, [{[T], <<"x">>} || T <- Topics]),
    {0, Dump} = script(Ctx, "flags", ["dump_topics"]),
    Tabs = lists:usort([Tab || L <- tl(string:split(Dump, "\n", all)), L =/= "",
                               [_, Tab, _] <- [string:lexemes(L, " ")]]),
    ?assertEqual(["shard_0", "shard_1", "shard_2"], Tabs),
    {0, Status} = script(Ctx, "flags", ["status"]),
    ?assert(has(Status, "\nretained_messages 15\n")),
    %% router_min_fanout_to_warn 2 and router_min_publish_to_topics_to_warn 3,
    %% logged at log_level warn; info lines are not.
    ok = kraken_client:subscribe(Sub2, [<<"flag_t1">>]),
    ok = kraken_client:publish(Pub, [{[<<"flag_t1">>], <<"fan">>}]),
    ok = kraken_client:publish(Pub, [{[<<"flag_u1">>, <<"flag_u2">>, <<"flag_u3">>], <<"t">>}]),
    Peer = "\\[::1\\]:" ++ integer_to_list(PubPort),
    wait_log(LogFile, "warning: publisher \\d+ \\(" ++ Peer ++ "\\) published one entry "
             "to 1 topics? \\[flag_t1\\] reaching 2 subscribers"),
    wait_log(LogFile, "warning: publisher \\d+ \\(" ++ Peer ++ "\\) published one entry "
             "to 3 topics \\[flag_u1 flag_u2 flag_u3\\] reaching 0 subscribers"),
    ?assertEqual([], lines(read(LogFile), " info: ")),
    [ok = kraken_client:disconnect(C) || C <- [Sub1, Sub2, Pub]],
    %% The application stopped on a running node: status 2, the engine is
    %% gone, the port is free, the pid_file removed.
    Engine = rpc(Node, kraken_engine, os_pid, []),
    ?assert(alive(Engine)),
    ok = rpc(Node, application, stop, [kraken]),
    ?assertMatch({2, _}, script(Ctx, "flags", ["status"])),
    ?assertMatch({2, _}, script(Ctx, "flags", ["dump_topics"])),
    ?assertNot(alive(Engine)),
    ?assert(port_free(V6, Port)),
    ?assertNot(filelib:is_regular(PidFile)),
    %% stop still stops the node.
    ?assertMatch({0, _}, script(Ctx, "flags", ["stop"])),
    ?assertMatch({1, _}, script(Ctx, "flags", ["status"])),
    _ = wait_until(fun() -> not alive(OsPid) end, ?WAIT).

os_pid_of({0, Status}) ->
    {match, [P]} = re:run(Status, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
    P.

%%% 3. Every option from a -config file; logging; engine kill -9; pid_file

config_node(Ctx = #{tmp := Tmp}) ->
    Port = free_port(),
    PidFile = filename:join(Tmp, "config.pid"),
    LogFile = filename:join(Tmp, "config.log"),
    Config = filename:join(Tmp, "kraken_config"),
    ok = file:write_file(Config ++ ".config",
                         io_lib:format("[{kraken, [{listen_ip, {127,0,0,1}},~n"
                                       "            {tcp_server_port, ~b},~n"
                                       "            {max_tcp_clients, 3},~n"
                                       "            {num_router_shards, 3},~n"
                                       "            {messages_stored_per_router_shard, 5},~n"
                                       "            {router_min_fanout_to_warn, 2},~n"
                                       "            {router_min_publish_to_topics_to_warn, 3},~n"
                                       "            {pid_file, ~p},~n"
                                       "            {log_file, ~p},~n"
                                       "            {log_level, info}]}].~n",
                                       [Port, PidFile, LogFile])),
    Ip = {127, 0, 0, 1},
    Node = node_atom(Ctx, "config"),
    OsPid = start(Ctx, "config", ["-config", Config], []),
    ?assertEqual({ok, <<(integer_to_binary(OsPid))/binary, "\n">>}, file:read_file(PidFile)),
    %% Extra arguments pass through to erl with every command.
    ?assertMatch({0, _}, script(Ctx, "config", ["status", "-config", Config])),
    %% listen_ip, tcp_server_port, num_router_shards and
    %% messages_stored_per_router_shard reached the engine.
    wait_log(LogFile, "^\\S+ \\S+ info: engine \\d+ listening on 127\\.0\\.0\\.1 port " ++
                 integer_to_list(Port) ++ " \\(3 shards, 5 messages retained per shard\\)$"),
    ?assertNot(can_connect({0, 0, 0, 0, 0, 0, 0, 1}, Port)),
    %% max_tcp_clients 3.
    {Sub1, _} = client(Ip, Port),
    {Sub2, _} = client(Ip, Port),
    {Pub, PubPort} = client(Ip, Port),
    ?assertMatch({<<"SERVER_ERROR Too many clients\r\n">>, _}, raw(Ip, Port, <<>>)),
    ok = kraken_client:disconnect(Sub2),
    %% A bad command is logged by the engine (info). (Below, settle/2 lets
    %% the engine notice a client left before the next one connects.)
    settle(Node, 2),
    {<<"ERROR\r\n">>, BadPort} = raw(Ip, Port, <<"bogus\r\n">>),
    wait_log(LogFile, " info: client \\d+ \\(127\\.0\\.0\\.1:" ++ integer_to_list(BadPort) ++
                 "\\): ERROR( for \".*\")?; closing the connection$"),
    %% At info the engine does not log connections; after change_log_level
    %% debug it does, and after change_log_level info no more.
    settle(Node, 2),
    {C1, P1} = client(Ip, Port),
    ok = kraken_client:disconnect(C1),
    ?assertMatch({0, "log level set to debug\n"},
                 script(Ctx, "config", ["change_log_level", "debug"])),
    settle(Node, 2),
    {C2, P2} = client(Ip, Port),
    ok = kraken_client:disconnect(C2),
    wait_log(LogFile, " debug: client \\d+ connected from 127\\.0\\.0\\.1:" ++
                 integer_to_list(P2) ++ "$"),
    ?assertMatch({0, "log level set to info\n"},
                 script(Ctx, "config", ["change_log_level", "info"])),
    settle(Node, 2),
    {C3, P3} = client(Ip, Port),
    ok = kraken_client:disconnect(C3),
    settle(Node, 2),
    {<<"ERROR\r\n">>, _} = raw(Ip, Port, <<"bogus\r\n">>),   % logged after C3
    wait_count(LogFile, "ERROR( for \".*\")?; closing the connection$", 2),
    Log1 = read(LogFile),
    ?assertEqual([], lines(Log1, "connected from 127\\.0\\.0\\.1:(" ++ integer_to_list(P1) ++
                               "|" ++ integer_to_list(P3) ++ ")$")),
    %% The fan-out warnings name the publisher, the topic and the counts.
    settle(Node, 2),
    {Sub3, _} = client(Ip, Port),
    ok = kraken_client:subscribe(Sub1, [<<"cfg_fan">>]),
    ok = kraken_client:subscribe(Sub3, [<<"cfg_fan">>, <<"cfg_b">>]),
    ok = kraken_client:publish(Pub, [{[<<"cfg_fan">>], <<"one">>}]),
    ok = kraken_client:publish(Pub, [{[<<"cfg_a">>, <<"cfg_b">>, <<"cfg_c">>], <<"two">>}]),
    Peer = "127\\.0\\.0\\.1:" ++ integer_to_list(PubPort),
    wait_log(LogFile, " warning: publisher \\d+ \\(" ++ Peer ++ "\\) published one entry to "
             "1 topics? \\[cfg_fan\\] reaching 2 subscribers$"),
    wait_log(LogFile, " warning: publisher \\d+ \\(" ++ Peer ++ "\\) published one entry to "
             "3 topics \\[cfg_a cfg_b cfg_c\\] reaching 1 subscribers?$"),
    %% kill -9 of the engine: a new one serves the same port within a
    %% second, the event is logged, clients reconnect.
    Engine = rpc(Node, kraken_engine, os_pid, []),
    kill9(Engine),
    Took = wait_until(fun() ->
                              case rpc(Node, kraken_engine, os_pid, []) of
                                  New when is_integer(New), New =/= Engine ->
                                      can_connect(Ip, Port);
                                  _ ->
                                      false
                              end
                      end, ?WAIT),
    ?assert(Took < 1000),
    ?assertMatch({error, _}, kraken_client:receive_messages(Sub1)),
    {Again, _} = client(Ip, Port),
    ok = kraken_client:subscribe(Again, [<<"cfg_fan">>]),
    ?assertEqual([], kraken_client:receive_messages(Again)),
    wait_log(LogFile, " error: kraken engine \\(os pid " ++ integer_to_list(Engine) ++
                 "\\) exited with status 137 \\(killed by signal 9\\); engine exits since "
                 "the application started: 1$"),
    wait_count(LogFile, " info: engine \\d+ listening on 127\\.0\\.0\\.1 port " ++
                   integer_to_list(Port) ++ " ", 2),
    [_ = kraken_client:disconnect(C) || C <- [Sub1, Sub3, Pub, Again]],
    %% stop: the engine is gone, the port free, the pid_file removed.
    Engine2 = rpc(Node, kraken_engine, os_pid, []),
    ?assertMatch({0, _}, script(Ctx, "config", ["stop"])),
    ?assertNot(alive(Engine2)),
    ?assert(port_free(Ip, Port)),
    ?assertNot(filelib:is_regular(PidFile)),
    ?assertMatch({1, _}, script(Ctx, "config", ["status"])),
    _ = wait_until(fun() -> not alive(OsPid) end, ?WAIT).

%%% 4. run in the foreground; the octopus section; console logging; the
%%% node killed with -9 takes its engine along

run_octopus(Ctx = #{tmp := Tmp, script := Script, ebin := Ebin, engine := EngineArgs}) ->
    Port = free_port(),
    Config = filename:join(Tmp, "octopus"),
    ok = file:write_file(Config ++ ".config",
                         io_lib:format("[{octopus, [{listen_ip, \"127.0.0.1\"},~n"
                                       "             {tcp_server_port, ~b}]}].~n", [Port])),
    Node = node_atom(Ctx, "run"),
    Run = open_port({spawn_executable, Script},
                    [{args, ["run", "-noshell", "-config", Config] ++ EngineArgs},
                     {env, [{"KRAKEN_EBIN", Ebin}, {"KRAKEN_NODE_NAME", node_name(Ctx, "run")}]},
                     {cd, Tmp}, exit_status, stderr_to_stdout, binary]),
    Console = fun() -> console(Run) end,
    _ = wait_until(fun() -> can_connect({127, 0, 0, 1}, Port) end, ?WAIT),
    {0, _} = script(Ctx, "run", ["status"]),
    %% Console logging, one line per event.
    _ = wait_until(fun() -> has(Console(), "listening on 127\\.0\\.0\\.1 port " ++
                                    integer_to_list(Port)) end, ?WAIT),
    Out = Console(),
    ?assert(has(Out, "(?m)^\\S+ \\S+ warning: kraken: the configuration section 'octopus' is "
                "deprecated; rename it to 'kraken'$")),
    ?assert(has(Out, "(?m)^\\S+ \\S+ info: engine \\d+ listening on 127\\.0\\.0\\.1 port " ++
                    integer_to_list(Port) ++ " \\(4 shards")),
    %% kill -9 of the node: the engine exits by itself.
    OsPid = list_to_integer(rpc(Node, os, getpid, [])),
    Engine = rpc(Node, kraken_engine, os_pid, []),
    kill9(OsPid),
    receive {Run, {exit_status, S}} -> ?assertNotEqual(0, S) after ?WAIT -> error(run_alive) end,
    Took = wait_until(fun() -> not alive(Engine) end, ?WAIT),
    ?assert(Took < 2000),
    ?assert(port_free({127, 0, 0, 1}, Port)).

%% The output of a running `bin/kraken run' received so far.
console(Run) ->
    Key = {console, Run},
    Got = receive_data(Run, []),
    Text = get_default(Key, "") ++ Got,
    put(Key, Text),
    Text.

receive_data(Run, Acc) ->
    receive {Run, {data, D}} -> receive_data(Run, [D | Acc])
    after 0 -> binary_to_list(iolist_to_binary(lists:reverse(Acc)))
    end.

get_default(Key, Default) ->
    case get(Key) of
        undefined -> Default;
        V -> V
    end.

%%% 5. More than 10 engine deaths in 10 s: the node halts

give_up(Ctx = #{tmp := Tmp}) ->
    Port = free_port(),
    LogFile = filename:join(Tmp, "give_up.log"),
    Node = node_atom(Ctx, "give_up"),
    OsPid = start(Ctx, "give_up", ["-kraken", "tcp_server_port", integer_to_list(Port),
                                   "-kraken", "listen_ip", quote("127.0.0.1"),
                                   "-kraken", "log_file", quote(LogFile)], []),
    %% Kills N engines, each once it replaced the previous one.
    Kill = fun Kill(0, Killed) ->
                   Killed;
               Kill(N, Killed) ->
                   Self = self(),
                   _ = wait_until(fun() ->
                                          case rpc(Node, kraken_engine, os_pid, []) of
                                              P when is_integer(P) ->
                                                  case lists:member(P, Killed) of
                                                      false -> kill9(P), Self ! {killed, P}, true;
                                                      true -> false
                                                  end;
                                              _ ->
                                                  false
                                          end
                                  end, ?WAIT),
                   receive {killed, P} -> Kill(N - 1, [P | Killed]) end
           end,
    %% 10 kills are survived...
    Killed = Kill(10, []),
    _ = wait_until(fun() -> can_connect({127, 0, 0, 1}, Port) end, ?WAIT),
    ?assertMatch({0, _}, script(Ctx, "give_up", ["status"])),
    %% ... the 11th within 10 s halts the node.
    _ = Kill(1, Killed),
    _ = wait_until(fun() -> not alive(OsPid) end, ?WAIT),
    ?assertMatch({1, _}, script(Ctx, "give_up", ["status"])),
    ?assert(port_free({127, 0, 0, 1}, Port)),
    ?assert(has(read(LogFile), "error: kraken: the engine exited too often")),
    ?assert(has(read(filename:join(Tmp, node_name(Ctx, "give_up") ++ ".console.log")),
                "kraken: the engine exited too often \\(more than 10 times in 10 s\\); "
                "halting the node")).

%%% 2. Bad values: one line, non-zero exit, no node left running

bad_values(Ctx = #{engine := Engine, tmp := Tmp}) ->
    {ok, Busy} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, BusyPort} = inet:port(Busy),
    Cases =
        [{["-kraken", "tcp_server_port", "70000"],
          "kraken: bad value for option tcp_server_port: 70000 (expected an integer 0..65535)"},
         {["-kraken", "num_router_shards", "0"],
          "kraken: bad value for option num_router_shards: 0 (expected an integer 1..65536)"},
         {["-kraken", "listen_ip", quote("bogus")],
          "kraken: bad value for option listen_ip: \"bogus\" (expected any, an IP address "
          "tuple or a numeric IP address string)"},
         {["-kraken", "log_level", "loud"],
          "kraken: bad value for option log_level: loud (expected debug, info, warn or error)"},
         %% A flag without its value is not ignored.
         {["-kraken", "tcp_server_port"],
          "kraken: bad command-line flag -kraken tcp_server_port (expected -kraken NAME VALUE)"},
         {["-kraken", "listen_ip", quote("127.0.0.1"),
           "-kraken", "tcp_server_port", integer_to_list(BusyPort)],
          "kraken: cannot listen on listen_ip 127.0.0.1 tcp_server_port " ++
              integer_to_list(BusyPort) ++ ": address already in use"},
         %% A misspelled option is refused, naming the closest one.
         {["-kraken", "tcp_server_prot", "13020"],
          "kraken: unknown option tcp_server_prot (did you mean tcp_server_port?)"},
         {["-config", filename:join(Tmp, "misspelled")],
          "kraken: unknown option log_levle (did you mean log_level?)"},
         %% An unquoted string, a negative number (erl takes it for a flag),
         %% a log_file that cannot be opened: one line each.
         {["-kraken", "listen_ip", "127.0.0.1"],
          "kraken: bad command-line value for option listen_ip: 127.0.0.1 (-kraken values "
          "are Erlang terms: quote strings, e.g. -kraken listen_ip '\"127.0.0.1\"')"},
         {["-kraken", "max_tcp_clients", "-5"],
          "kraken: bad value for option max_tcp_clients: -5 (expected an integer "
          "1..4294967295)"},
         {["-kraken", "log_file", quote(Tmp)],
          "kraken: cannot open log_file " ++ Tmp ++ ": illegal operation on a directory"},
         {["-kraken", "log_file", quote("/proc/no_such_dir/kraken.log")],
          "kraken: cannot open log_file /proc/no_such_dir/kraken.log: no such file or "
          "directory"},
         %% A pid_file in a missing directory: refused before the log_file
         %% (and its directory) is made.
         {["-kraken", "pid_file", quote(filename:join([Tmp, "no_dir", "k.pid"])),
           "-kraken", "log_file", quote(filename:join([Tmp, "log_dir", "k.log"]))],
          "kraken: cannot write pid_file " ++ filename:join([Tmp, "no_dir", "k.pid"]) ++
              ": no such file or directory"}],
    ok = file:write_file(filename:join(Tmp, "misspelled.config"),
                         "[{kraken, [{log_levle, debug}]}].\n"),
    try
        %% Each case starts two VMs that refuse to start: all at once, each
        %% under its own node name (about a second each in sequence).
        Runs = pmap(fun({I, {Args, _}}) ->
                            Name = "bad" ++ integer_to_list(I),
                            {script(Ctx, Name, ["start" | Args] ++ Engine),
                             script(Ctx, Name, ["run", "-noshell" | Args] ++ Engine)}
                    end, lists:zip(lists:seq(1, length(Cases)), Cases)),
        [?assertEqual({Args, {1, Msg ++ "\n"}, {1, Msg ++ "\n"}}, {Args, Start, Run})
         || {{Args, Msg}, {Start, Run}} <- lists:zip(Cases, Runs)],
        ?assertMatch({1, _}, script(Ctx, "bad", ["status"])),
        ?assertNot(filelib:is_file(filename:join(Tmp, "log_dir"))),
        %% A missing -config file.
        [?assertEqual({1, "kraken: config file /nonexistent/kraken not found\n"},
                      script(Ctx, "bad", [Command, "-config", "/nonexistent/kraken"]))
         || Command <- ["start", "run", "status"]],
        %% A -config file erl cannot parse (no final dot): one line, and no
        %% erl_crash.dump in the working directory.
        NoDot = filename:join(Tmp, "no_dot"),
        ok = file:write_file(NoDot ++ ".config", "[{kraken, [{tcp_server_port, 0}]}]\n"),
        [?assertEqual({Command, {1, "kraken: cannot read config file " ++ NoDot ++
                                     ".config: no ending <dot> found\n"}},
                      {Command, script(Ctx, "bad", [Command, "-config", NoDot])})
         || Command <- ["start", "run", "status"]],
        ?assertNot(filelib:is_regular(filename:join(Tmp, "erl_crash.dump")))
    after
        gen_tcp:close(Busy)
    end.

%%% 7. What a user of start, status and the log sees (issue 9)

lifecycle_details(Ctx = #{tmp := Tmp, host := Host}) ->
    Port = free_port(),
    PidFile = filename:join(Tmp, "details.pid"),
    LogFile = filename:join(Tmp, "details.log"),
    Config = filename:join(Tmp, "details"),
    %% The octopus section and an option of the original that this server
    %% does not use: accepted, with warnings on the terminal.
    ok = file:write_file(Config ++ ".config",
                         "[{octopus, [{logging_module, lager}]}].\n"),
    Node = node_atom(Ctx, "details"),
    NodeName = atom_to_list(Node),
    Args = ["-config", Config, "-kraken", "listen_ip", quote("127.0.0.1"),
            "-kraken", "tcp_server_port", integer_to_list(Port),
            "-kraken", "pid_file", quote(PidFile), "-kraken", "log_file", quote(LogFile)],
    {0, Out} = script(Ctx, "details", ["start" | Args] ++ maps:get(engine, Ctx)),
    ?assert(has(Out, "^kraken: the configuration section 'octopus' is deprecated; rename "
                "it to 'kraken'$")),
    ?assert(has(Out, "^kraken: option logging_module is not used by this server; ignored$")),
    {match, [OsPid]} = re:run(Out, "\\(os pid (\\d+)\\)", [{capture, all_but_first, list}]),
    %% Log lines name the node; "listening" once per start.
    wait_log(LogFile, "^\\S+ " ++ NodeName ++ " info: kraken 1\\.0\\.0 started \\(os pid " ++
                 OsPid ++ "\\)$"),
    Log1 = read(LogFile),
    ?assertEqual([], [L || L <- string:split(Log1, "\n", all), L =/= "",
                           not has(L, "^\\S+ " ++ NodeName ++ " (debug|info|warning|error): ")]),
    ?assertEqual(1, length(lines(Log1, "listening"))),
    %% A second node given the same pid_file is refused; the file is kept.
    ?assertEqual({1, "kraken: pid_file " ++ PidFile ++ " names a running process (os pid " ++
                      OsPid ++ "): is another kraken node using it?\n"},
                 script(Ctx, "details2", ["start", "-kraken", "tcp_server_port", "0",
                                          "-kraken", "pid_file", quote(PidFile)])),
    ?assertEqual({ok, list_to_binary(OsPid ++ "\n")}, file:read_file(PidFile)),
    %% change_log_level in any case.
    ?assertEqual({0, "log level set to debug\n"},
                 script(Ctx, "details", ["change_log_level", "DEBUG"])),
    ?assertEqual({0, "log level set to info\n"},
                 script(Ctx, "details", ["change_log_level", "Info"])),
    %% The engine restart count: kept by the node, shown by status.
    {0, Status0} = script(Ctx, "details", ["status"]),
    ?assert(has(Status0, "^engine_restarts 0$")),
    ?assertEqual(0, rpc(Node, kraken, engine_restarts, [])),
    [begin
         Engine = rpc(Node, kraken_engine, os_pid, []),
         kill9(Engine),
         _ = wait_until(fun() ->
                                case rpc(Node, kraken_engine, os_pid, []) of
                                    New when is_integer(New), New =/= Engine ->
                                        can_connect({127, 0, 0, 1}, Port);
                                    _ ->
                                        false
                                end
                        end, ?WAIT)
     end || _ <- [1, 2]],
    ?assertEqual(2, rpc(Node, kraken, engine_restarts, [])),
    {0, Status2} = script(Ctx, "details", ["status"]),
    ?assert(has(Status2, "^engine_restarts 2$")),
    wait_count(LogFile, "listening", 3),
    %% The application stopped on a running node: start says so.
    ok = rpc(Node, application, stop, [kraken]),
    ?assertEqual({1, "kraken: node " ++ NodeName ++ " is up (os pid " ++ OsPid ++ ") but the "
                      "kraken application is not running; start it there with "
                      "kraken:start(), or bin/kraken stop the node first\n"},
                 script(Ctx, "details", ["start" | Args])),
    ?assertEqual(0, rpc(Node, kraken, engine_restarts, [])),
    %% The log records the stop.
    Log2 = read(LogFile),
    ?assert(has(Log2, "^\\S+ " ++ NodeName ++ " info: kraken stopping: closing the engine "
                "and every client connection$")),
    ?assert(has(Log2, "^\\S+ " ++ NodeName ++ " info: kraken stopped$")),
    %% A pid_file that another process took over is not removed at stop.
    ok = rpc(Node, application, start, [kraken]),
    ok = file:write_file(PidFile, os:getpid() ++ "\n"),
    ?assertMatch({0, _}, script(Ctx, "details", ["stop"])),
    ?assertEqual({ok, list_to_binary(os:getpid() ++ "\n")}, file:read_file(PidFile)),
    %% A stale pid_file (no such process) is replaced.
    ok = file:write_file(PidFile, "999999999\n"),
    NewPid = start(Ctx, "details", Args, []),
    ?assertEqual({ok, <<(integer_to_binary(NewPid))/binary, "\n">>}, file:read_file(PidFile)),
    ?assertMatch({0, _}, script(Ctx, "details", ["stop"])),
    ?assertNot(filelib:is_regular(PidFile)),
    %% The hint when the code is not built names make.
    ?assertEqual({3, "kraken: /nonexistent/kraken.app not found; build with 'make' in " ++
                      filename:dirname(filename:dirname(maps:get(script, Ctx))) ++ "\n"},
                 script(Ctx, "details", ["status"], [{ebin, "/nonexistent"}])),
    _ = Host.

%%% listen_ip on the application in this node

listen_ip(Ip, Yes, No) ->
    _ = application:load(kraken),
    Engine = case os:getenv("KRAKEN_ENGINE") of
                 false -> undefined;
                 "" -> undefined;
                 Path -> Path
             end,
    [ok = application:set_env(kraken, K, V)
     || {K, V} <- kraken_config:defaults() ++
            [{listen_ip, Ip}, {tcp_server_port, 0}, {log_level, warn},
             {engine_executable, Engine}]],
    ok = kraken:start(),
    %% Mutes OTP's report of the application's stop.
    ok = logger:add_primary_filter(kraken_test_mute,
                                   {fun(#{meta := #{domain := [otp | _]}}, _) -> stop;
                                       (_, _) -> ignore
                                    end, []}),
    try
        Port = kraken_engine:port(),
        Addr = fun(ipv4) -> {127, 0, 0, 1}; (ipv6) -> {0, 0, 0, 0, 0, 0, 0, 1} end,
        [?assertEqual({F, true}, {F, can_connect(Addr(F), Port)}) || F <- Yes],
        [?assertEqual({F, false}, {F, can_connect(Addr(F), Port)}) || F <- No]
    after
        ok = application:stop(kraken),
        _ = logger:remove_primary_filter(kraken_test_mute),
        [ok = application:set_env(kraken, K, V) || {K, V} <- kraken_config:defaults()]
    end.

%%% Log wording written by c_src/session.c (issue 9, item 15)

%% NOT RUN YET: c_src/session.c is being refactored elsewhere. Once it logs
%%   - an error reply with the command line that caused it, e.g.
%%     `client 3 (127.0.0.1:40000): ERROR for "bogus"; closing the connection'
%%     (the line cut at 64 bytes, bytes outside 0x21..0x7e except space
%%     escaped as \xNN, as the topics of the fan-out warning are), and
%%   - the fan-out warning with singular and plural right: `to 1 topic [t]',
%%     `reaching 1 subscriber',
session_log_wording_test_() ->
    {setup, fun start_local/0, fun stop_local/1,
     fun(Port) -> {timeout, 30, fun() -> session_log_wording(Port) end} end}.

session_log_wording(Port) ->
    %% (eunit runs the setup and the test in different processes.)
    ok = logger:update_handler_config(kraken_ops_capture, config, #{pid => self()}),
    Ip = {127, 0, 0, 1},
    {<<"ERROR\r\n">>, P1} = raw(Ip, Port, <<"bogus\r\n">>),
    {<<"ERROR\r\n">>, P2} = raw(Ip, Port, <<"get foo\r\n">>),
    {<<"ERROR\r\n">>, P3} = raw(Ip, Port, <<"bo\tgus x\r\n">>),
    wait_logged("^client \\d+ \\(127\\.0\\.0\\.1:" ++ integer_to_list(P1) ++
                    "\\): ERROR for \"bogus\"; closing the connection$"),
    wait_logged("^client \\d+ \\(127\\.0\\.0\\.1:" ++ integer_to_list(P2) ++
                    "\\): ERROR for \"get foo\"; closing the connection$"),
    wait_logged("^client \\d+ \\(127\\.0\\.0\\.1:" ++ integer_to_list(P3) ++
                    "\\): ERROR for \"bo\\\\x09gus x\"; closing the connection$"),
    {S1, _} = client(Ip, Port),
    {S2, _} = client(Ip, Port),
    {Pub, _} = client(Ip, Port),
    ok = kraken_client:subscribe(S1, [<<"w_one">>]),
    ok = kraken_client:subscribe(S2, [<<"w_one">>, <<"w_b">>]),
    ok = kraken_client:publish(Pub, [{[<<"w_one">>], <<"x">>}]),
    ok = kraken_client:publish(Pub, [{[<<"w_a">>, <<"w_b">>], <<"y">>}]),
    wait_logged("published one entry to 1 topic \\[w_one\\] reaching 2 subscribers$"),
    wait_logged("published one entry to 2 topics \\[w_a w_b\\] reaching 1 subscriber$"),
    [ok = kraken_client:disconnect(C) || C <- [S1, S2, Pub]].

%% The application in this node, logging to this process; returns its port.
start_local() ->
    _ = application:stop(kraken),
    _ = application:load(kraken),
    Engine = case os:getenv("KRAKEN_ENGINE") of
                 false -> undefined;
                 "" -> undefined;
                 Path -> Path
             end,
    [ok = application:set_env(kraken, K, V)
     || {K, V} <- kraken_config:defaults() ++
            [{listen_ip, "127.0.0.1"}, {tcp_server_port, 0}, {log_level, info},
             {router_min_fanout_to_warn, 2}, {router_min_publish_to_topics_to_warn, 2},
             {engine_executable, Engine}]],
    ok = logger:add_handler(kraken_ops_capture, ?MODULE,
                            #{level => all, config => #{pid => self()}}),
    ok = kraken:start(),
    kraken_engine:port().

stop_local(_Port) ->
    _ = application:stop(kraken),
    _ = logger:remove_handler(kraken_ops_capture),
    [ok = application:set_env(kraken, K, V) || {K, V} <- kraken_config:defaults()],
    ok.

%% @private logger handler callback: sends each message to the test process.
log(#{msg := Msg}, #{config := #{pid := Pid}}) ->
    Text = case Msg of
               {string, S} -> S;
               {report, R} -> io_lib:format("~0tp", [R]);
               {Fmt, Args} -> io_lib:format(Fmt, Args)
           end,
    Pid ! {kraken_log, unicode:characters_to_list(Text)},
    ok.

wait_logged(Pattern) ->
    Deadline = erlang:monotonic_time(millisecond) + ?WAIT,
    wait_logged(Pattern, Deadline, []).

wait_logged(Pattern, Deadline, Seen) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {kraken_log, Line} ->
            case has(Line, Pattern) of
                true -> ok;
                false -> wait_logged(Pattern, Deadline, [Line | Seen])
            end
    after Left ->
            error({not_logged, Pattern, lists:reverse(Seen)})
    end.
