%% @doc The admin commands of bin/kraken: the temporary node's side.
%%
%% bin/kraken starts a temporary hidden node that runs {@link main/0}; it
%% reaches the server node and calls the formatting functions of
%% kraken_ctl_engine there with rpc:call (status/0, dump_queues/0,
%% dump_queue_topics/1, dump_topics/0, change_log_level/1, stats/0; the
%% cluster's are kraken_ctl_cluster's), prints their text and halts with
%% the command's exit status. `start', `run' and `stop' wait for the node
%% (kraken_ctl_node). `publish' and `tail' ask the node for its Kraken port
%% (kraken_ctl_engine:endpoint/0) and run kraken_client on the temporary
%% node. Exit status: 0 success, 1 node down, 2 node up but the application
%% is not running, 3 bad usage or failed command, 4 the engine does not
%% answer (or, for status, is not ready).  The text helpers at the end
%% (table/1, format_duration/1, escape/1) serve every command.
-module(kraken_ctl).

-export([main/0, main/1, check_config/0]).
-export([format_duration/1, escape/1, format_message/2, table/1]).

-include("kraken_ctl.hrl").

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
    kraken_ctl_node:wait_started(Node, OsPid, Deadline);
run("check_free", Node, []) ->
    kraken_ctl_node:check_free(Node);
run("stop", Node, []) ->
    kraken_ctl_node:stop(Node);
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

%% Runs a function of kraken_ctl_engine (or {Module, Function}) on the
%% server node.
remote(Node, Function, Args) ->
    case remote_call(Node, Function, Args) of
        {ok, Text} -> {0, Text};
        {Status, _} = Failed when is_integer(Status) -> Failed;
        {error, Text} -> {3, Text};
        {not_running, Text} -> {2, Text};
        {engine_down, Text} -> {4, Text};
        Text -> {0, Text}
    end.

%% The result of a function of kraken_ctl_engine (or {Module, Function})
%% on the server node, or `{ExitStatus, Text}' when the node or the application is
%% not running.
remote_call(Node, Function, Args) ->
    case kraken_ctl_node:ping(Node) of
        false ->
            {1, kraken_ctl_node:down(Node)};
        true ->
            case rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT) of
                {running, _} ->
                    {Mod, Fun} = case Function of
                                     {_, _} -> Function;
                                     _ -> {kraken_ctl_engine, Function}
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
