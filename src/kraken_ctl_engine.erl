%% @doc The engine's admin commands of bin/kraken: `status', `stats', the
%% dump commands and `change_log_level' (and endpoint/0 for `publish' and
%% `tail'). Each runs on the server node (bin/kraken's temporary node calls
%% it there, kraken_ctl:remote/3), asks the engine (kraken_engine:call/2)
%% and returns the text to print: `{ok | error, Text}', or `{engine_down,
%% Text}' when the engine does not answer within ?DUMP_TIMEOUT (status:
%% when its data-plane check, the `ready' call, fails within
%% ?PROBE_TIMEOUT). The cluster's commands are kraken_ctl_cluster's.
-module(kraken_ctl_engine).

-export([status/0, dump_queues/0, dump_queue_topics/1, dump_topics/0,
         change_log_level/1, stats/0, endpoint/0]).

-import(kraken_ctl, [format_duration/1, escape/1, table/1]).

%% How long status waits for the engine's data-plane check, and the dump
%% commands for their answer.
-define(PROBE_TIMEOUT, 2000).
-define(DUMP_TIMEOUT, 10000).

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
            {error, io_lib:format("kraken: bad queue id ~ts (expected an id from "
                                  "dump_queues)~n", [Id])}
    end.

format_queue_topics(Id, Result) ->
    case Result of
        Topics when is_list(Topics) ->
            {ok, [[escape(T), $\n] || T <- lists:sort(Topics)]};
        Missing when Missing =:= not_found; Missing =:= {error, badarg} ->
            {error, io_lib:format("kraken: no client queue with id ~b~n", [Id])};
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
        [] -> {error, io_lib:format("kraken: bad log level ~ts (expected debug, info, "
                                    "warn or error)~n", [Level])}
    end;
change_log_level(Level) ->
    case kraken_engine:set_log_level(Level) of
        ok -> {ok, io_lib:format("log level set to ~s~n", [Level])};
        {error, Msg} -> {error, ["kraken: ", Msg, $\n]}
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

stat_name(<<"pid">>) -> <<"engine_os_pid">>;
stat_name(Name) -> Name.

