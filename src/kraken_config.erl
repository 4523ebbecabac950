%% @doc Kraken's configuration: reads the `kraken' application environment
%% (and, for compatibility with the seed README, an `octopus' section),
%% validates every option and normalises it.
%%
%% The result of {@link load/0} is a proplist holding every option of
%% {@link defaults/0}; {@link engine_options/1} selects from it the options
%% sent to the C engine in the `{config, Options}' packet described in
%% docs/engine-protocol.md.
%%
%% Precedence when both sections are given: a `kraken' value that differs
%% from its default wins; otherwise the `octopus' value is used.
-module(kraken_config).

-export([load/0, read/0, log_warnings/1, validate/1, defaults/0, engine_options/1,
         check_log_level/1, logger_level/1, check_flags/1, check_config_file/1]).

-include_lib("kernel/include/logger.hrl").

-type option() :: {atom(), term()}.
-export_type([option/0]).

%% Options read by the C engine (docs/engine-protocol.md), in protocol order.
-define(ENGINE_OPTIONS,
        [listen_ip, tcp_server_port, max_tcp_clients, num_router_shards,
         messages_stored_per_router_shard, router_min_fanout_to_warn,
         router_min_publish_to_topics_to_warn, log_level,
         client_idle_timeout_secs, max_request_bytes, max_client_queue_bytes,
         bytes_stored_per_router_shard, redis_port, redis_password]).

%% @doc Every option with its default (the same as src/kraken.app.src).
-spec defaults() -> [option()].
defaults() ->
    [{listen_ip, any},
     {tcp_server_port, 12355},
     {max_tcp_clients, 1000},
     {num_router_shards, 4},
     {messages_stored_per_router_shard, 10000},
     {router_min_fanout_to_warn, 1000},
     {router_min_publish_to_topics_to_warn, 1000},
     {pid_file, undefined},
     {log_file, undefined},
     {log_level, info},
     {client_idle_timeout_secs, 3600},
     {max_request_bytes, 16777216},
     {max_client_queue_bytes, 33554432},
     {bytes_stored_per_router_shard, 67108864},
     {redis_port, undefined},
     {redis_password, undefined},
     {engine_executable, undefined},
     %% The cluster (docs/cluster.md); not engine options: kraken_cluster
     %% tells the engine the live cores on the control channel.
     {role, core},
     {cluster_nodes, []},
     {upstreams, []},
     {upstream_poll_ms, 1000}].

%% @doc Reads, merges and validates the application environment; logs the
%% warnings of {@link read/0} at once.
-spec load() -> {ok, [option()]} | {error, string()}.
load() ->
    logged(read()).

%% @doc Reads, merges and validates the application environment; returns
%% the warnings (deprecated `octopus' section, unknown options) instead of
%% logging them, so that they can be logged once logging is set up.
-spec read() -> {ok, [option()], [string()]} | {error, string()}.
read() ->
    case check_flags([{Flag, Args} || Flag <- [kraken, octopus],
                                      {ok, Args} <- [init:get_argument(Flag)]]) of
        ok -> read_env();
        {error, _} = Error -> Error
    end.

read_env() ->
    _ = application:load(kraken),
    Kraken = application:get_all_env(kraken),
    {Merged, Warnings} =
        case octopus_env() of
            [] ->
                {Kraken, []};
            Octopus ->
                {merge(Kraken, Octopus),
                 ["kraken: the configuration section 'octopus' is deprecated; "
                  "rename it to 'kraken'"]}
        end,
    case check_all(Merged) of
        {ok, Config, More} -> {ok, Config, Warnings ++ More};
        {error, _} = Error -> Error
    end.

%% @doc Validates and normalises a proplist of options; missing options take
%% their default, unknown ones are reported with a warning and dropped.
-spec validate([option()]) -> {ok, [option()]} | {error, string()}.
validate(Env) ->
    logged(check_all(Env)).

%% Logs the warnings of a successful read or check, and drops them.
logged({ok, Config, Warnings}) ->
    log_warnings(Warnings),
    {ok, Config};
logged({error, _} = Error) ->
    Error.

%% @doc Checks the `-kraken' and `-octopus' command-line flags, given as
%% `[{Flag, init:get_argument(Flag) values}]': each flag must give exactly a
%% name and a value (OTP itself silently drops a name without a value).
-spec check_flags([{atom(), [[string()]]}]) -> ok | {error, string()}.
check_flags([]) ->
    ok;
check_flags([{Flag, Args} | Rest]) ->
    case [A || A <- Args, length(A) =/= 2] of
        [] ->
            check_flags(Rest);
        [Bad | _] ->
            {error, flat("kraken: bad command-line flag ~ts (expected -~s NAME VALUE)",
                         [lists:join(" ", ["-" ++ atom_to_list(Flag) | Bad]), Flag])}
    end.

%% @doc Checks that erl can read the configuration a `-config' argument
%% names (Arg, or Arg.config as erl reads it): that the file exists and
%% holds one list ended by a dot, as do the files a sys.config names.
%% erl itself stops with a crash dump on such errors; this gives one line.
-spec check_config_file(string()) -> ok | {error, string()}.
check_config_file(Arg) ->
    File = config_file_name(Arg),
    case read_config_file(File) of
        {ok, Terms} ->
            case filename:basename(File) of
                "sys.config" ->
                    check_included(File, [T || T <- Terms, io_lib:char_list(T)]);
                _ ->
                    ok
            end;
        {error, enoent} ->
            {error, flat("kraken: config file ~ts not found", [Arg])};
        {error, Reason} ->
            {error, flat("kraken: cannot read config file ~ts: ~ts", [File, Reason])}
    end.

%% @doc Logs warnings returned by {@link read/0}.
-spec log_warnings([string()]) -> ok.
log_warnings(Warnings) ->
    [?LOG_WARNING("~ts", [W]) || W <- Warnings],
    ok.

check_all(Env) ->
    Known = [Name || {Name, _} <- defaults()],
    Warnings = [lists:flatten(io_lib:format("kraken: unknown option ~tp ignored", [Name]))
                || {Name, _} <- Env, not lists:member(Name, Known)],
    case validate(defaults(), Env, []) of
        {ok, Config} -> {ok, Config, Warnings};
        {error, _} = Error -> Error
    end.

validate([], _Env, Acc) ->
    {ok, lists:reverse(Acc)};
validate([{Name, Default} | Rest], Env, Acc) ->
    Value = proplists:get_value(Name, Env, Default),
    case check(Name, Value) of
        {ok, Normal} ->
            validate(Rest, Env, [{Name, Normal} | Acc]);
        {error, Expected} ->
            {error, lists:flatten(
                      io_lib:format("kraken: bad value for option ~s: ~0tp "
                                    "(expected ~s)", [Name, Value, Expected]))}
    end.

%% @doc The options of a validated configuration that the C engine reads.
-spec engine_options([option()]) -> [option()].
engine_options(Config) ->
    %% An option left undefined (redis_port: off) is not sent: the engine's
    %% default applies.
    [{Name, V} || Name <- ?ENGINE_OPTIONS, (V = proplists:get_value(Name, Config)) =/= undefined].

%% @doc Validates a log level, normalising `warning' to `warn'.
-spec check_log_level(term()) -> {ok, debug | info | warn | error} | {error, string()}.
check_log_level(Level) ->
    check(log_level, Level).

%% @doc The OTP logger level for one of our log levels.
-spec logger_level(debug | info | warn | error) -> logger:level().
logger_level(warn) -> warning;
logger_level(Level) -> Level.

%%% Internal functions

check(listen_ip, Value) -> check_ip(Value);
check(tcp_server_port, V) -> check_int(V, 0, 65535);
%% The same ranges as the engine's (c_src/config.c).
check(max_tcp_clients, V) -> check_int(V, 1, 16#FFFFFFFF);
check(num_router_shards, V) -> check_int(V, 1, 65536);
check(messages_stored_per_router_shard, V) -> check_int(V, 1, 100000000);
check(router_min_fanout_to_warn, V) -> check_int(V, 1, 16#FFFFFFFF);
check(router_min_publish_to_topics_to_warn, V) -> check_int(V, 1, 16#FFFFFFFF);
check(client_idle_timeout_secs, V) -> check_int(V, 1, 100000000);
%% At most 2 GiB: lengths and counts are 32-bit inside the engine.
check(max_request_bytes, V) -> check_int(V, 1024, 1 bsl 31);
check(max_client_queue_bytes, V) -> check_int(V, 1024, 1 bsl 31);
check(bytes_stored_per_router_shard, V) -> check_int(V, 1024, 1 bsl 40);
check(log_level, V) when V =:= debug; V =:= info; V =:= warn; V =:= error ->
    {ok, V};
check(log_level, warning) ->
    {ok, warn};
check(log_level, _) ->
    {error, "debug, info, warn or error"};
check(redis_port, undefined) -> {ok, undefined};
check(redis_port, V) -> check_int(V, 0, 65535);
check(redis_password, undefined) -> {ok, undefined};
check(redis_password, V) when is_binary(V), byte_size(V) > 0, byte_size(V) < 256 -> {ok, V};
check(redis_password, V) when is_list(V) ->
    try check(redis_password, unicode:characters_to_binary(V))
    catch error:_ -> {error, "a string of 1 to 255 bytes"}
    end;
check(redis_password, V) when is_atom(V) -> check(redis_password, atom_to_binary(V));
check(redis_password, _) -> {error, "a string of 1 to 255 bytes"};
check(role, V) when V =:= core; V =:= proxy -> {ok, V};
check(role, _) -> {error, "core or proxy"};
check(cluster_nodes, V) -> check_list(V, fun check_node/1, "a list of node names");
check(upstreams, V) -> check_list(V, fun check_endpoint/1, "a list of \"host:port\" strings");
check(upstream_poll_ms, V) -> check_int(V, 10, 3600000);
check(pid_file, V) -> check_path(V);
check(log_file, V) -> check_path(V);
check(engine_executable, V) -> check_path(V).

check_int(V, Min, infinity) when is_integer(V), V >= Min ->
    {ok, V};
check_int(V, Min, Max) when is_integer(V), V >= Min, V =< Max ->
    {ok, V};
check_int(_, Min, infinity) ->
    {error, io_lib:format("an integer >= ~b", [Min])};
check_int(_, Min, Max) ->
    {error, io_lib:format("an integer ~b..~b", [Min, Max])}.

check_list(L, Check, Expected) when is_list(L) ->
    Checked = [Check(X) || X <- L],
    case [ok || error <- Checked] of
        [] -> {ok, Checked};
        _ -> {error, Expected}
    end;
check_list(_, _, Expected) ->
    {error, Expected}.

%% A node name: an atom or a string, `name' or `name@host'.
check_node(N) when is_atom(N), N =/= '' -> N;
check_node(N) when is_list(N); is_binary(N) ->
    case to_string(N) of
        error -> error;
        "" -> error;
        Str -> list_to_atom(Str)
    end;
check_node(_) -> error.

%% "host:port" (a [v6]:port too) -> {HostString, Port}.
check_endpoint(E) when is_list(E); is_binary(E) ->
    case to_string(E) of
        error ->
            error;
        Str ->
            case string:split(Str, ":", trailing) of
                [Host0, PortStr] when Host0 =/= "" ->
                    Host = string:trim(Host0, both, "[]"),
                    case string:to_integer(PortStr) of
                        {P, ""} when P > 0, P < 65536 -> {Host, P};
                        _ -> error
                    end;
                _ ->
                    error
            end
    end;
check_endpoint(_) -> error.

-define(IP_EXPECTED, "any, an IP address tuple or a numeric IP address string").

check_ip(any) ->
    {ok, <<"0.0.0.0">>};
check_ip(T) when is_tuple(T) ->
    case valid_ip_tuple(T) of
        true -> {ok, list_to_binary(inet:ntoa(T))};
        false -> {error, ?IP_EXPECTED}
    end;
check_ip(S) when is_binary(S); is_list(S) ->
    case to_string(S) of
        "any" ->
            check_ip(any);
        Str when is_list(Str) ->
            case inet:parse_strict_address(Str) of
                {ok, Addr} -> {ok, list_to_binary(inet:ntoa(Addr))};
                {error, _} -> {error, ?IP_EXPECTED}
            end;
        error ->
            {error, ?IP_EXPECTED}
    end;
check_ip(_) ->
    {error, ?IP_EXPECTED}.

valid_ip_tuple({_, _, _, _} = T) -> all_in_range(tuple_to_list(T), 255);
valid_ip_tuple({_, _, _, _, _, _, _, _} = T) -> all_in_range(tuple_to_list(T), 65535);
valid_ip_tuple(_) -> false.

all_in_range(L, Max) ->
    lists:all(fun(X) -> is_integer(X) andalso X >= 0 andalso X =< Max end, L).

check_path(undefined) ->
    {ok, undefined};
check_path(V) when is_binary(V); is_list(V) ->
    case to_string(V) of
        "" -> {error, "a non-empty file name"};
        error -> {error, "a file name string"};
        Str -> {ok, Str}
    end;
check_path(_) ->
    {error, "a file name string"}.

to_string(V) ->
    try unicode:characters_to_list(V) of
        Str when is_list(Str) -> Str;
        _ -> error
    catch
        error:_ -> error
    end.

%% The file erl reads for `-config Arg'.
config_file_name(Arg) ->
    case lists:suffix(".config", Arg) of
        true -> Arg;
        false -> Arg ++ ".config"
    end.

%% The files named in a sys.config, as erl finds them: a relative name
%% relative to the sys.config's directory if the file is there, otherwise
%% to the working directory.
check_included(_Sys, []) ->
    ok;
check_included(Sys, [Name | Rest]) ->
    File0 = config_file_name(Name),
    File = case filename:pathtype(File0) of
               relative ->
                   InDir = filename:join(filename:dirname(Sys), File0),
                   case filelib:is_file(InDir) of
                       true -> InDir;
                       false -> File0
                   end;
               _ ->
                   File0
           end,
    case read_config_file(File) of
        {ok, _} ->
            check_included(Sys, Rest);
        {error, enoent} ->
            {error, flat("kraken: config file ~ts named in ~ts not found", [File, Sys])};
        {error, Reason} ->
            {error, flat("kraken: cannot read config file ~ts: ~ts", [File, Reason])}
    end.

%% Reads a configuration file as erl does (application_controller): one
%% list term ended by a dot, with only white space and comments after it.
read_config_file(File) ->
    case file:read_file(File) of
        {ok, Bin} ->
            Encoding = case epp:read_encoding_from_binary(Bin) of
                           none -> epp:default_encoding();
                           E -> E
                       end,
            case unicode:characters_to_list(Bin, Encoding) of
                Text when is_list(Text) -> parse_config(Text ++ " ");
                _ -> {error, "bad encoding"}
            end;
        {error, enoent} ->
            {error, enoent};
        {error, Reason} ->
            {error, file:format_error(Reason)}
    end.

-define(ONE_LIST, "expected one list ended by a dot, "
                  "e.g. [{kraken, [{tcp_server_port, 12355}]}].").

parse_config(Text) ->
    case erl_scan:tokens([], Text, 1) of
        {done, {ok, Tokens, _}, Left} ->
            case erl_parse:parse_term(Tokens) of
                {ok, List} when is_list(List) ->
                    case erl_scan:string(Left) of
                        {ok, [], _} -> {ok, List};
                        _ -> {error, ?ONE_LIST}
                    end;
                {ok, _} ->
                    {error, ?ONE_LIST};
                {error, ErrorInfo} ->
                    {error, format_error_info(ErrorInfo)}
            end;
        {done, {error, ErrorInfo, _}, _} ->
            {error, format_error_info(ErrorInfo)};
        {done, {eof, _}, _} ->
            {error, "no ending <dot> found"};
        {more, _} ->
            {error, "no ending <dot> found"}
    end.

format_error_info({Location, Module, Desc}) ->
    Line = case Location of
               {L, _Column} when is_integer(L) -> L;
               L when is_integer(L) -> L;
               Anno -> erl_anno:line(Anno)
           end,
    flat("line ~b: ~ts", [Line, Module:format_error(Desc)]).

flat(Fmt, Args) ->
    lists:flatten(io_lib:format(Fmt, Args)).

%% The `octopus' section: loading a stand-in application spec makes OTP
%% apply `-config' files and `-octopus Name Value' flags to it.
octopus_env() ->
    Spec = {application, octopus,
            [{description, "compatibility alias for kraken's configuration"},
             {vsn, "0"}, {modules, []}, {registered, []},
             {applications, [kernel, stdlib]}]},
    _ = application:load(Spec),
    application:get_all_env(octopus).

merge(Kraken, Octopus) ->
    Defaults = defaults(),
    Explicit = [KV || {K, V} = KV <- Kraken,
                      proplists:get_value(K, Defaults, make_ref()) =/= V],
    Explicit ++ Octopus ++ Kraken.
