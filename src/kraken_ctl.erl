%% @doc The admin commands of bin/kraken.
%%
%% bin/kraken starts a temporary hidden node that runs {@link main/0}; it
%% reaches the server node and calls the formatting functions below there
%% with rpc:call (status/0, dump_queues/0, dump_queue_topics/1,
%% dump_topics/0, change_log_level/1, stats/0), prints their text and halts
%% with the command's exit status. `publish' and `tail' ask the node for its
%% Kraken port (endpoint/0) and run kraken_client on the temporary node. Exit status: 0 success, 1 node down, 2 node up but
%% the application is not running, 3 bad usage or failed command, 4 the
%% engine does not answer (or, for status, is not ready).
-module(kraken_ctl).

-export([main/0, main/1, check_config/0]).
-export([status/0, dump_queues/0, dump_queue_topics/1, dump_topics/0,
         change_log_level/1, stats/0, endpoint/0]).
-export([format_duration/1, escape/1, format_message/2, table/1]).

-define(RPC_TIMEOUT, 30000).
%% How long status waits for the engine's data-plane check, and the dump
%% commands for their answer.
-define(PROBE_TIMEOUT, 2000).
-define(DUMP_TIMEOUT, 10000).

%%% Functions run on the server node; each returns the text to print.

%% @doc `{ok, Text}' when running, `{not_running, Text}' when the
%% application is not, `{engine_down, Text}' when its engine does not pass
%% the data-plane check (the `ready' call: a canary through the router)
%% within 2 s, or is not ready.
-spec status() -> {ok | not_running | engine_down, iodata()}.
status() ->
    case kraken:status() of
        {running, Info} ->
            T0 = erlang:monotonic_time(microsecond),
            case probe() of
                ok ->
                    Ms = (erlang:monotonic_time(microsecond) - T0) / 1000,
                    status_text(Info, Ms);
                {Problem, Text} ->
                    {engine_down,
                     io_lib:format("kraken: node ~s is running but its engine (os pid ~w) ~s~n",
                                   [node(), catch kraken_engine:os_pid(),
                                    engine_problem(Problem, Text)])}
            end;
        not_running ->
            {not_running, io_lib:format("node ~s is up but the kraken application "
                                        "is not running~n", [node()])}
    end.

status_text(Info, Ms) ->
    Stats = try kraken_engine:call(stats, ?PROBE_TIMEOUT) of
                L when is_list(L) -> L;
                _ -> []
            catch _:_ -> []
            end,
    {ok, [io_lib:format("kraken ~s is running on node ~s (os pid ~s), "
                        "listening on port ~b~n",
                        [proplists:get_value(K, Info)
                         || K <- [version, node, os_pid, port]]),
          io_lib:format("engine ready: a canary went through the router in ~.1f ms~n",
                        [Ms]),
          [io_lib:format("~s ~w~n", [stat_name(Name), Value])
           || {Name, Value} <- Stats,
              Name =/= <<"version">>]]}.   % already in the first line

%% The data-plane check: the engine's `ready' call within PROBE_TIMEOUT.
probe() ->
    try kraken_engine:call(ready, ?PROBE_TIMEOUT) of
        ready -> ok;
        {not_ready, Why} -> {not_ready, Why};
        Other -> {error, io_lib:format("~0p", [Other])}
    catch
        exit:{timeout, _} -> {timeout, ?PROBE_TIMEOUT};
        exit:Reason -> {error, io_lib:format("~0p", [Reason])}
    end.

engine_problem(timeout, Ms) ->
    io_lib:format("does not answer (no reply within ~b s)", [Ms div 1000]);
engine_problem(not_ready, Why) ->
    io_lib:format("is not ready: ~s", [Why]);
engine_problem(error, Text) ->
    io_lib:format("failed the check: ~s", [Text]).

%% An admin request to the engine; throws `{engine_down, Text}' when it does
%% not answer within DUMP_TIMEOUT.
dump_call(Request, Name) ->
    try
        kraken_engine:call(Request, ?DUMP_TIMEOUT)
    catch
        exit:{timeout, _} ->
            throw({engine_down,
                   io_lib:format("kraken: the engine (os pid ~w) of node ~s did not answer "
                                 "~s within ~b s~n",
                                 [catch kraken_engine:os_pid(), node(), Name,
                                  ?DUMP_TIMEOUT div 1000])})
    end.

%% @doc One line per client queue, in the engine's order: by the time of
%% each client's last request, the longest idle first and the most recently
%% active last (not by connection time).
-spec dump_queues() -> iodata() | {engine_down, iodata()}.
dump_queues() ->
    try dump_call(dump_queues, dump_queues) of
        {error, Reason} ->
            {engine_down, io_lib:format("kraken: dump_queues failed in the engine: ~0p~n",
                                        [Reason])};
        Queues -> format_queues(Queues)
    catch
        throw:{engine_down, _} = Down -> Down
    end.

format_queues(Queues) ->
    Header = {"ID", "PEER", "SUBSCRIPTIONS", "QUEUED", "RECEIVED", "CONNECTED",
              "LAST_POLL"},
    Rows = [{integer_to_list(Id), binary_to_list(Peer), integer_to_list(Subs),
             integer_to_list(QLen), integer_to_list(Received),
             format_duration(Connected),
             case SincePoll of
                 -1 -> "never";
                 _ -> format_duration(SincePoll) ++ " ago"
             end}
            || {Id, Peer, Subs, QLen, Received, Connected, SincePoll} <- Queues],
    table([Header | Rows]).

%% @doc The topics one client queue (an id from dump_queues) subscribes to,
%% in byte order. An id the engine cannot decode (it answers `badarg', e.g.
%% for one beyond 64 bits) is no client queue's either.
-spec dump_queue_topics(integer() | string() | binary()) ->
          {ok | error | engine_down, iodata()}.
dump_queue_topics(Id) when is_integer(Id) ->
    try dump_call({dump_queue_topics, Id}, dump_queue_topics) of
        Result -> format_queue_topics(Id, Result)
    catch
        throw:{engine_down, _} = Down -> Down
    end;
dump_queue_topics(Id) ->
    case string:to_integer(string:trim(Id)) of
        {Int, Rest} when is_integer(Int), (Rest =:= "" orelse Rest =:= <<>>) ->
            dump_queue_topics(Int);
        _ ->
            {error, io_lib:format("bad queue id ~ts (expected an id from "
                                  "dump_queues)~n", [Id])}
    end.

format_queue_topics(Id, Result) ->
    case Result of
        Topics when is_list(Topics) ->
            {ok, [[escape(T), $\n] || T <- lists:sort(Topics)]};
        Missing when Missing =:= not_found; Missing =:= {error, badarg} ->
            {error, io_lib:format("no client queue with id ~b~n", [Id])};
        {error, Reason} ->
            {error, io_lib:format("kraken: dump_queue_topics failed: ~0p~n", [Reason])}
    end.

%% @doc Every topic with its shard ("tab") and subscriber count, most
%% subscribed first.
-spec dump_topics() -> iodata() | {engine_down, iodata()}.
dump_topics() ->
    try dump_call(dump_topics, dump_topics) of
        {error, Reason} ->
            {engine_down, io_lib:format("kraken: dump_topics failed in the engine: ~0p~n",
                                        [Reason])};
        Topics -> format_topics(Topics)
    catch
        throw:{engine_down, _} = Down -> Down
    end.

format_topics(Topics) ->
    Sorted = lists:sort(fun({_, _, A}, {_, _, B}) -> A >= B end, Topics),
    table([{"TOPIC", "TAB", "SUBSCRIBERS"} |
           [{escape(T), "shard_" ++ integer_to_list(Shard), integer_to_list(N)}
            || {T, Shard, N} <- Sorted]]).

%% @doc Sets the log level of logger and of the engine.
-spec change_log_level(atom() | string()) -> {ok | error, iodata()}.
change_log_level(Level) when is_list(Level) ->
    Lower = string:lowercase(Level),
    case [L || L <- [debug, info, warn, warning, error], atom_to_list(L) =:= Lower] of
        [L] -> change_log_level(L);
        [] -> {error, io_lib:format("bad log level ~ts (expected debug, info, "
                                    "warn or error)~n", [Level])}
    end;
change_log_level(Level) ->
    case kraken_engine:set_log_level(Level) of
        ok -> {ok, io_lib:format("log level set to ~s~n", [Level])};
        {error, Msg} -> {error, [Msg, $\n]}
    end.

%% @doc The engine's `stats' figures, one `name value' per line, the names
%% in a column.
-spec stats() -> {ok | engine_down, iodata()}.
stats() ->
    try dump_call(stats, stats) of
        L when is_list(L) ->
            {ok, table([{binary_to_list(stat_name(N)), value_text(V)} || {N, V} <- L])};
        Other ->
            {engine_down, io_lib:format("kraken: stats failed in the engine: ~0p~n", [Other])}
    catch
        throw:{engine_down, _} = Down -> Down
    end.

value_text(V) when is_binary(V) -> binary_to_list(V);
value_text(V) when is_integer(V) -> integer_to_list(V);
value_text(V) -> lists:flatten(io_lib:format("~0p", [V])).

%% @doc Where a client on this machine reaches the node's Kraken port:
%% `{Host, Port}', the loopback address when the engine listens on every
%% address.
-spec endpoint() -> {ok, {inet:ip_address() | string(), inet:port_number()}}.
endpoint() ->
    Port = kraken_engine:port(),
    Host = case application:get_env(kraken, listen_ip, any) of
               any -> {127, 0, 0, 1};
               {0, 0, 0, 0} -> {127, 0, 0, 1};
               {0, 0, 0, 0, 0, 0, 0, 0} -> {127, 0, 0, 1};
               "0.0.0.0" -> {127, 0, 0, 1};
               "::" -> {127, 0, 0, 1};
               Ip when is_tuple(Ip) -> Ip;
               Ip when is_list(Ip) -> Ip;
               Ip when is_binary(Ip) -> binary_to_list(Ip);
               Ip when is_atom(Ip) -> atom_to_list(Ip)
           end,
    {ok, {Host, Port}}.

%%% The temporary node's side

%% @doc Entry point of the non-distributed node that bin/kraken runs before
%% anything else when it is given `-config' files (its arguments after
%% `-extra'): erl itself would stop with a crash dump on a file it cannot
%% read or parse, so this prints the one-line reason of the first bad one
%% ({@link kraken_config_args:check_config_file/1}) and halts with status 1, or
%% halts with 0.
-spec check_config() -> no_return().
check_config() ->
    Errors = [Msg || Arg <- init:get_plain_arguments(),
                     {error, Msg} <- [kraken_config_args:check_config_file(Arg)]],
    case Errors of
        [] ->
            erlang:halt(0);
        [Msg | _] ->
            io:put_chars(standard_error, [Msg, $\n]),
            erlang:halt(1)
    end.

%% @doc Entry point of the temporary node: reads its arguments after
%% `-extra' (Command, Node, Args...), runs the command and halts.
-spec main() -> no_return().
main() ->
    main(init:get_plain_arguments()).

-spec main([string()]) -> no_return().
main([Command, NodeName | Args]) ->
    Node = node_name(NodeName),
    {Status, Text, Err} =
        try run(Command, Node, Args) of
            {S, T} -> {S, T, []};
            {_, _, _} = Three -> Three
        catch Class:Reason:Stack ->
                {3, io_lib:format("kraken: ~s failed: ~p:~p~n~p~n",
                                  [Command, Class, Reason, Stack]), []}
        end,
    io:put_chars(standard_error, Err),
    Out = case Status of 0 -> standard_io; _ -> standard_error end,
    io:put_chars(Out, Text),
    erlang:halt(Status);
main(_) ->
    io:put_chars(standard_error, "usage: kraken_ctl COMMAND NODE [ARGS]\n"),
    erlang:halt(3).

run("wait_started", Node, [OsPid, Secs]) ->
    Deadline = erlang:monotonic_time(millisecond) + list_to_integer(Secs) * 1000,
    wait_started(Node, OsPid, Deadline);
run("check_free", Node, []) ->
    check_free(Node);
run("stop", Node, []) ->
    case ping(Node) of
        false ->
            {1, down(Node)};
        true ->
            _ = rpc:call(Node, kraken, stop_node, [], ?RPC_TIMEOUT),
            wait_down(Node, erlang:monotonic_time(millisecond) + 60000)
    end;
run("status", Node, []) ->
    remote(Node, status, []);
run("dump_queues", Node, []) ->
    remote(Node, dump_queues, []);
run("dump_queue_topics", Node, [Id]) ->
    remote(Node, dump_queue_topics, [Id]);
run("dump_topics", Node, []) ->
    remote(Node, dump_topics, []);
run(Cmd, Node, []) when Cmd =:= "cluster_status"; Cmd =:= "drain"; Cmd =:= "undrain" ->
    remote(Node, {kraken_ctl_cluster, list_to_atom(Cmd)}, []);
run("stats", Node, []) ->
    remote(Node, stats, []);
run("publish", Node, [File | Topics]) when Topics =/= [] ->
    {ok, Message} = file:read_file(File),
    with_connection(Node, fun(S) ->
                                  case kraken_client:publish(S, [{topics(Topics), Message}]) of
                                      ok -> {0, ""};
                                      {error, Reason} ->
                                          {3, io_lib:format("kraken: publish failed: ~0p~n",
                                                            [Reason])}
                                  end
                          end);
run("tail", Node, Topics) when Topics =/= [] ->
    with_connection(Node, fun(S) -> tail(S, Node, topics(Topics)) end);
run("change_log_level", Node, [Level]) ->
    remote(Node, change_log_level, [Level]);
run(Command, _Node, Args) ->
    {3, io_lib:format("kraken: bad command or arguments: ~ts ~ts~n",
                      [Command, lists:join(" ", Args)])}.

%% Connects to the node's Kraken port (asked of the node), runs Fun with the
%% socket and disconnects.
with_connection(Node, Fun) ->
    case remote_call(Node, endpoint, []) of
        {ok, {Host, Port}} ->
            case kraken_client:connect(Host, Port) of
                {ok, S} ->
                    try Fun(S)
                    after catch kraken_client:disconnect(S)
                    end;
                {error, Reason} ->
                    {3, io_lib:format("kraken: cannot connect to ~s port ~b of node ~s: ~s~n",
                                      [host_text(Host), Port, Node, inet:format_error(Reason)])}
            end;
        {_Status, _Text} = Failed ->
            Failed
    end.

host_text(Host) when is_tuple(Host) -> inet:ntoa(Host);
host_text(Host) -> Host.

topics(Args) ->
    [case unicode:characters_to_binary(A) of
         B when is_binary(B) -> B;
         _ -> list_to_binary(A)
     end || A <- Args].

%% `bin/kraken tail': subscribes, turns push mode on and prints what comes,
%% one line per message, until the connection closes (or SIGINT ends the
%% node: bin/kraken runs it with +Bd).
tail(S, Node, Topics) ->
    case kraken_client:subscribe(S, Topics) of
        ok ->
            case kraken_client:push(S, on) of
                ok ->
                    io:put_chars(standard_error,
                                 io_lib:format("kraken: tailing ~s on node ~s (Ctrl-C to stop)~n",
                                               [lists:join(" ", [escape(T) || T <- Topics]),
                                                Node])),
                    tail_loop(S);
                {error, Reason} ->
                    {3, io_lib:format("kraken: push mode refused: ~0p~n", [Reason])}
            end;
        {error, Reason} ->
            {3, io_lib:format("kraken: subscribe failed: ~0p~n", [Reason])}
    end.

tail_loop(S) ->
    case kraken_client:await_messages(S, infinity) of
        Messages when is_list(Messages) ->
            Now = erlang:system_time(microsecond),
            io:put_chars(standard_io, [format_message(Now, M) || M <- Messages]),
            tail_loop(S);
        {error, closed} ->
            {1, "kraken: the server closed the connection\n"};
        {error, Reason} ->
            {1, io_lib:format("kraken: tail failed: ~0p~n", [Reason])}
    end.

%% @doc One line for `tail': the time (ISO 8601, UTC, microseconds), the
%% topics separated by commas, the payload; in both, bytes outside printable
%% ASCII (and a backslash) are escaped as \xNN (\\); in topics a comma too.
-spec format_message(integer(), {[binary()], binary()}) -> iodata().
format_message(Micros, {Topics, Payload}) ->
    Time = calendar:system_time_to_rfc3339(Micros, [{unit, microsecond}, {offset, "Z"}]),
    [Time, $\s, lists:join(",", [escape_topic(T) || T <- Topics]), $\s,
     escape_payload(Payload), $\n].

escape_topic(Topic) ->
    lists:flatmap(fun($,) -> "\\x2c"; (C) -> [C] end, escape(Topic)).

escape_payload(Payload) ->
    lists:flatmap(fun($\\) -> "\\\\";
                     (C) when C >= 16#20, C < 16#7f -> [C];
                     (C) -> io_lib:format("\\x~2.16.0b", [C])
                  end, binary_to_list(Payload)).

%% Runs a function of this module (or {Module, Function}) on the server
%% node.
remote(Node, Function, Args) ->
    case remote_call(Node, Function, Args) of
        {ok, Text} -> {0, Text};
        {Status, _} = Failed when is_integer(Status) -> Failed;
        {error, Text} -> {3, Text};
        {not_running, Text} -> {2, Text};
        {engine_down, Text} -> {4, Text};
        Text -> {0, Text}
    end.

%% The result of a function of this module (or {Module, Function}) on the
%% server node, or `{ExitStatus, Text}' when the node or the application is
%% not running.
remote_call(Node, Function, Args) ->
    case ping(Node) of
        false ->
            {1, down(Node)};
        true ->
            case rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT) of
                {running, _} ->
                    {Mod, Fun} = case Function of
                                     {_, _} -> Function;
                                     _ -> {?MODULE, Function}
                                 end,
                    case rpc:call(Node, Mod, Fun, Args, ?RPC_TIMEOUT) of
                        {badrpc, Reason} ->
                            {3, io_lib:format("kraken: ~s failed on ~s: ~0p~n",
                                              [Fun, Node, Reason])};
                        Result -> Result
                    end;
                _ ->
                    {2, io_lib:format("node ~s is up but the kraken application "
                                      "is not running~n", [Node])}
            end
    end.

%% Used by `bin/kraken start': waits until the new node (OS process OsPid)
%% runs the application, or that process is gone (e.g. when the node name is
%% already taken by a running node).
wait_started(Node, OsPid, Deadline) ->
    Status = case ping(Node) of
                 true -> rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT);
                 false -> down
             end,
    Ours = case Status of
               {running, I} -> proplists:get_value(os_pid, I) =:= OsPid;
               _ -> false
           end,
    case Status of
        {running, Info} when Ours ->
            %% The configuration warnings go to the terminal, not only to
            %% the log.
            Warnings = case rpc:call(Node, kraken, start_warnings, [], ?RPC_TIMEOUT) of
                           W when is_list(W) -> W;
                           _ -> []
                       end,
            {0, io_lib:format("kraken started on node ~s, listening on port ~b "
                              "(os pid ~s)~n",
                              [Node, proplists:get_value(port, Info),
                               proplists:get_value(os_pid, Info)]),
             [[W, $\n] || W <- Warnings]};
        {running, Info} ->
            case kraken_engine:os_process_alive(OsPid) of
                false ->
                    {1, already_running(Node, proplists:get_value(os_pid, Info))};
                true ->
                    retry_started(Node, OsPid, Deadline)
            end;
        _ ->
            case kraken_engine:os_process_alive(OsPid) of
                false ->
                    {1, io_lib:format("kraken: node ~s failed to start~n", [Node])};
                true ->
                    retry_started(Node, OsPid, Deadline)
            end
    end.

%% Used by `bin/kraken run' when the node name is taken in epmd: refuses
%% with the line `start' gives, rather than erl's own complaint.
check_free(Node) ->
    case ping(Node) of
        true ->
            OsPid = case rpc:call(Node, os, getpid, [], ?RPC_TIMEOUT) of
                        P when is_list(P) -> P;
                        _ -> undefined
                    end,
            case rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT) of
                not_running ->
                    {1, io_lib:format("kraken: node ~s is up (os pid ~s) but the kraken "
                                      "application is not running; start it there with "
                                      "kraken:start(), or bin/kraken stop the node first~n",
                                      [Node, OsPid])};
                _ ->
                    {1, already_running(Node, OsPid)}
            end;
        false ->
            [Name, Host] = string:split(atom_to_list(Node), "@"),
            case catch erl_epmd:names(Host) of
                {ok, Names} when is_list(Names) ->
                    case lists:keymember(Name, 1, Names) of
                        true ->
                            {1, io_lib:format("kraken: the node name ~s is in use by "
                                              "another Erlang node~n", [Node])};
                        false ->
                            {0, ""}
                    end;
                _ ->
                    {0, ""}
            end
    end.

already_running(Node, undefined) ->
    io_lib:format("kraken: node ~s is already running~n", [Node]);
already_running(Node, OsPid) ->
    io_lib:format("kraken: node ~s is already running (os pid ~s)~n", [Node, OsPid]).

retry_started(Node, OsPid, Deadline) ->
    case erlang:monotonic_time(millisecond) > Deadline of
        true ->
            {1, io_lib:format("kraken: node ~s did not start the application in time~n",
                              [Node])};
        false ->
            timer:sleep(50),
            wait_started(Node, OsPid, Deadline)
    end.

wait_down(Node, Deadline) ->
    case ping(Node) of
        false ->
            {0, io_lib:format("kraken stopped (node ~s)~n", [Node])};
        true ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true ->
                    {3, io_lib:format("kraken: node ~s did not stop in time~n",
                                      [Node])};
                false ->
                    timer:sleep(100),
                    wait_down(Node, Deadline)
            end
    end.

ping(Node) ->
    net_adm:ping(Node) =:= pong.

%% The node does not answer: not running, or (epmd on its host lists the
%% name) running with another Erlang cookie, which is then said, since
%% "not running" would send the operator looking in the wrong place.
down(Node) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    case catch erl_epmd:names(Host) of
        {ok, Names} when is_list(Names) ->
            case lists:keymember(Name, 1, Names) of
                true ->
                    io_lib:format("kraken: node ~s does not answer: epmd on ~s lists it, but "
                                  "it refused this command's connection (a different Erlang "
                                  "cookie? run the command as the node's user, or give it the "
                                  "node's -setcookie)~n", [Node, Host]);
                false ->
                    io_lib:format("kraken: node ~s is not running~n", [Node])
            end;
        _ ->
            io_lib:format("kraken: node ~s is not running~n", [Node])
    end.

%% "kraken" -> kraken@<this host>; "name@host" is used as is.
node_name(Name) ->
    case lists:member($@, Name) of
        true ->
            list_to_atom(Name);
        false ->
            [_, Host] = string:split(atom_to_list(node()), "@"),
            list_to_atom(Name ++ "@" ++ Host)
    end.

%%% Formatting helpers

stat_name(<<"pid">>) -> <<"engine_os_pid">>;
stat_name(Name) -> Name.

%% @doc "3h02m05s"-style duration for a number of seconds.
-spec format_duration(integer()) -> string().
format_duration(Secs) when Secs < 60 ->
    integer_to_list(Secs) ++ "s";
format_duration(Secs) when Secs < 3600 ->
    lists:flatten(io_lib:format("~bm~2..0bs", [Secs div 60, Secs rem 60]));
format_duration(Secs) when Secs < 86400 ->
    lists:flatten(io_lib:format("~bh~2..0bm~2..0bs",
                                [Secs div 3600, Secs rem 3600 div 60, Secs rem 60]));
format_duration(Secs) ->
    lists:flatten(io_lib:format("~bd~s", [Secs div 86400,
                                          format_duration(Secs rem 86400)])).

%% @doc A topic as printable text: bytes outside 0x21..0x7e become \xNN
%% (and a backslash becomes \\), so one topic is one word on one line.
-spec escape(binary()) -> string().
escape(Topic) ->
    lists:flatmap(fun($\\) -> "\\\\";
                     (C) when C > 16#20, C < 16#7f -> [C];
                     (C) -> io_lib:format("\\x~2.16.0b", [C])
                  end, binary_to_list(Topic)).

%% Rows of strings as left-aligned columns separated by two spaces.
table(Rows) ->
    Lists = [tuple_to_list(R) || R <- Rows],
    Widths = lists:foldl(fun(Cols, Ws) ->
                                 [max(string:length(C), W) || {C, W} <- lists:zip(Cols, Ws)]
                         end, [0 || _ <- hd(Lists)], Lists),
    [[string:trim(lists:join("  ", [string:pad(C, W) || {C, W} <- lists:zip(Cols, Widths)]),
                  trailing), $\n]
     || Cols <- Lists].
