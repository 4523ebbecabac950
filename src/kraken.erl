%% @doc Kraken's entry points: start/stop the application, and the small
%% admin functions that bin/kraken calls on the server node.
-module(kraken).

-export([start/0, stop/0, boot/0, booted/0, status/0, port/0, stop_node/0,
         format_error/1, start_warnings/0, engine_restarts/0]).

-define(STOP_DRAIN_MS, 15000).

%% @doc Starts the kraken application and what it depends on.
-spec start() -> ok | {error, term()}.
start() ->
    case application:ensure_all_started(kraken) of
        {ok, _Started} -> ok;
        {error, Reason} -> {error, Reason}
    end.

%% @doc Stops the kraken application.
-spec stop() -> ok | {error, term()}.
stop() ->
    application:stop(kraken).

%% @doc Used by `bin/kraken run' and `start': starts the application or
%% prints the one-line reason on stderr and halts the node with status 1.
%% OTP's own reports about the failed start are muted so that the reason
%% is the only thing printed. The node is then one that halts if the
%% application gives up on its engine (see kraken_app).
-spec boot() -> ok.
boot() ->
    persistent_term:put({?MODULE, booted}, true),
    %% Flags OTP cannot read make it print an error report when it loads
    %% the application: they are refused before that.
    case kraken_config_args:check_command_line() of
        {ok, _} -> ok;
        {error, Msg} -> halt_with(Msg)
    end,
    ok = logger:add_primary_filter(kraken_boot, {fun mute_otp_reports/2, []}),
    Result = start(),
    _ = logger:remove_primary_filter(kraken_boot),
    case Result of
        ok ->
            %% With a log_file, the console (the terminal of `run') shows the
            %% configuration warnings only if they are printed here.
            case logger:get_handler_config(default) of
                {ok, _} -> ok;
                {error, _} -> [io:format(standard_error, "~ts~n", [W]) || W <- start_warnings()]
            end,
            ok;
        {error, Reason} ->
            halt_with(format_error(Reason))
    end.

halt_with(Msg) ->
    io:format(standard_error, "~ts~n", [Msg]),
    _ = (catch logger_std_h:filesync(default)),
    erlang:halt(1).

%% @doc Whether this node was started by {@link boot/0}.
-spec booted() -> boolean().
booted() ->
    persistent_term:get({?MODULE, booted}, false).

%% @doc The configuration warnings of the application's last start (the
%% deprecated `octopus' section, options this server does not use), which
%% `bin/kraken start' prints on the terminal.
-spec start_warnings() -> [string()].
start_warnings() ->
    persistent_term:get({?MODULE, start_warnings}, []).

%% @doc `running' once the application is started and its engine listens.
-spec status() -> {running, [{atom(), term()}]} | not_running.
status() ->
    Running = lists:keymember(kraken, 1, application:which_applications()),
    case Running andalso catch kraken_engine:port() of
        Port when is_integer(Port) ->
            {ok, Vsn} = application:get_key(kraken, vsn),
            {running, [{node, node()}, {version, Vsn}, {port, Port},
                       {os_pid, os:getpid()}]};
        _ ->
            not_running
    end.

%% @doc How many times the engine was restarted (it exited and the
%% supervisor started a new one) since the application started; 0 when the
%% application is not running. The engine's own counters (`status', the
%% `stats' command) start again at 0 with each new engine.
-spec engine_restarts() -> non_neg_integer().
engine_restarts() ->
    kraken_sup:engine_restarts().

%% @doc The TCP port the server listens on.
-spec port() -> inet:port_number().
port() ->
    kraken_engine:port().

%% @doc Stops the application and then the node (used by `bin/kraken stop').
%% A core in a cluster is drained first (its topics move to the other cores,
%% nobody disconnected), for at most ?STOP_DRAIN_MS.
-spec stop_node() -> ok.
stop_node() ->
    _ = spawn(fun() ->
                      _ = kraken_cluster:drain(?STOP_DRAIN_MS),
                      _ = stop(),
                      init:stop()
              end),
    ok.

%% @doc A one-line description of an application start error.
-spec format_error(term()) -> string().
format_error(Reason) ->
    case find_error(Reason) of
        {bad_config, Msg} ->
            flat("~ts", [Msg]);
        {engine_error, Msg} ->
            flat("kraken: the engine failed to start: ~ts", [Msg]);
        not_found ->
            flat("kraken: failed to start: ~0tp", [Reason])
    end.

%%% Internal functions

find_error({bad_environment_value, Value}) when is_list(Value) ->
    {bad_config, flat("kraken: bad command-line value ~ts: -kraken values are Erlang "
                      "terms, so quote strings (e.g. -kraken listen_ip '\"127.0.0.1\"')",
                      [Value])};
find_error({bad_config, Msg}) when is_list(Msg); is_binary(Msg) ->
    {bad_config, Msg};
find_error({engine_error, Msg}) when is_list(Msg); is_binary(Msg) ->
    {engine_error, Msg};
find_error(T) when is_tuple(T) ->
    find_error(tuple_to_list(T));
find_error([H | T]) ->
    case find_error(H) of
        not_found -> find_error(T);
        Found -> Found
    end;
find_error(_) ->
    not_found.

flat(Fmt, Args) ->
    lists:flatten(io_lib:format(Fmt, Args)).

mute_otp_reports(#{meta := #{domain := [otp | _]}}, _) -> stop;
mute_otp_reports(_Event, _) -> ignore.
