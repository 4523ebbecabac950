%% @doc Kraken's configuration: reads the `kraken' application environment
%% (and, for compatibility with the seed README, an `octopus' section),
%% validates every option and normalises it.
%%
%% The engine's options, their types, ranges and defaults, are defined once,
%% in the C engine (c_src/config.c): `kraken_engine --options' prints them as
%% Erlang terms, which the build writes to priv/kraken_options.eterm, and
%% which {@link engine_table/0} reads. The node's own options (pid_file,
%% log_file, engine_executable) are defined here.
%%
%% The result of {@link load/0} is a proplist holding every option of
%% {@link defaults/0}; {@link engine_options/1} selects from it the options
%% sent to the C engine in the `{config, Options}' packet described in
%% docs/engine-protocol.md.
%%
%% An unknown option refuses the start, naming the closest known one; the
%% options that older versions of the original accepted and this server
%% does not use are accepted with a warning.
%%
%% Precedence when both sections are given: a `kraken' value that differs
%% from its default wins; otherwise the `octopus' value is used.
%%
%% Each value is checked by kraken_config_check; the `-kraken' flags and
%% the `-config' files, before OTP reads them, by kraken_config_args.
-module(kraken_config).

-export([load/0, read/0, log_warnings/1, validate/1, defaults/0, engine_options/1,
         engine_table/0, check_log_level/1, logger_level/1, closest/2]).

-include_lib("kernel/include/logger.hrl").

-type option() :: {atom(), term()}.
-type table_entry() :: {Name :: atom(), Type :: integer | ip_address | log_level | string,
                        Min :: integer() | undefined, Max :: integer() | undefined,
                        Default :: term()}.
-export_type([option/0, table_entry/0]).

%% The node's own options, not sent to the engine, with their defaults.
-define(NODE_OPTIONS, [{pid_file, undefined}, {log_file, undefined},
                       {engine_executable, undefined},
                       %% The cluster (docs/cluster.md): kraken_cluster tells
                       %% the engine the live cores on the control channel.
                       {role, core}, {cluster_nodes, []}, {upstreams, []},
                       {upstream_poll_ms, 1000}, {parents, []},
                       %% The address the other members connect to (unset:
                       %% listen_ip, or the node's host name's address).
                       {cluster_advertise, undefined},
                       %% true: never forms a cluster alone (waits for a
                       %% member: docs/cluster.md, "Quorum").
                       {cluster_join_only, false}]).

%% Options that versions of the original accepted and this server does not
%% use: `logging_module' (the octopus-era application file) and
%% `proxy_to_node' (its pooling experiment). Accepted with a warning.
-define(LEGACY_OPTIONS, [logging_module, proxy_to_node]).

-define(TABLE_FILE, "kraken_options.eterm").

%% Engine options the node sets itself, not the user: engine_restarts (the
%% node's count, so that the engine's metrics can export it) and
%% cluster_wait (set on a node in a cluster: kraken_engine).
-define(INTERNAL_OPTIONS, [engine_restarts, cluster_wait]).

%% @doc The engine's option table (priv/kraken_options.eterm, written at
%% build time by `kraken_engine --options'), in the engine's order.
-spec engine_table() -> {ok, [table_entry()]} | {error, string()}.
engine_table() ->
    case kraken_engine:priv_file(?TABLE_FILE) of
        {ok, File} ->
            case file:consult(File) of
                {ok, Terms} ->
                    {ok, Terms};
                {error, Reason} ->
                    {error, flat("kraken: cannot read ~ts: ~ts (run make)",
                                 [File, file:format_error(Reason)])}
            end;
        {error, Looked} ->
            {error, flat("kraken: the engine's option table was not found (looked for "
                         "~ts; run make)", [lists:join(", ", Looked)])}
    end.

%% The options a user may set: the engine's, less the internal ones.
table() ->
    case engine_table() of
        {ok, Table} -> [E || E = {Name, _, _, _, _} <- Table,
                             not lists:member(Name, ?INTERNAL_OPTIONS)];
        {error, Msg} -> erlang:error({kraken_options, Msg})
    end.

%% @doc Every option with its default (the same as src/kraken.app.src):
%% the engine's, then the node's.
-spec defaults() -> [option()].
defaults() ->
    defaults(table()).

defaults(Table) ->
    [{Name, erlang_default(Type, Default)} || {Name, Type, _, _, Default} <- Table]
        ++ ?NODE_OPTIONS.

%% `any' is how the application environment spells the engine's 0.0.0.0.
erlang_default(ip_address, <<"0.0.0.0">>) -> any;
erlang_default(_, Default) -> Default.

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
    case kraken_config_args:check_command_line() of
        {ok, Set} ->
            case engine_table() of
                {ok, _} -> read_env(Set);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

read_env(Set) ->
    _ = application:load(kraken),
    _ = octopus_env(),
    [ok = application:set_env(App, Name, Value) || {App, Name, Value} <- Set],
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
    case engine_table() of
        {ok, _} -> logged(check_all(Env));
        {error, _} = Error -> Error
    end.

%% Logs the warnings of a successful read or check, and drops them.
logged({ok, Config, Warnings}) ->
    log_warnings(Warnings),
    {ok, Config};
logged({error, _} = Error) ->
    Error.

%% @doc Logs warnings returned by {@link read/0}.
-spec log_warnings([string()]) -> ok.
log_warnings(Warnings) ->
    [?LOG_WARNING("~ts", [W]) || W <- Warnings],
    ok.

check_all(Env) ->
    Table = table(),
    Defaults = defaults(Table),
    Known = [Name || {Name, _} <- Defaults],
    Names = lists:usort([Name || {Name, _} <- Env]),
    Legacy = [Name || Name <- Names, lists:member(Name, ?LEGACY_OPTIONS)],
    case [Name || Name <- Names, not lists:member(Name, Known ++ ?LEGACY_OPTIONS)] of
        [] ->
            Warnings = [flat("kraken: option ~tp is not used by this server; ignored",
                             [Name]) || Name <- Legacy],
            case validate(Defaults, Env, Table, []) of
                {ok, Config} -> {ok, Config, Warnings};
                {error, _} = Error -> Error
            end;
        [Unknown | _] ->
            {error, unknown_option(Unknown, Known)}
    end.

unknown_option(Name, Known) ->
    case closest(Name, Known) of
        {ok, Close} ->
            flat("kraken: unknown option ~tp (did you mean ~s?)", [Name, Close]);
        none ->
            flat("kraken: unknown option ~tp (the options are listed in README.md, "
                 "Configuration)", [Name])
    end.

%% @doc The known name closest to Name by edit distance (Levenshtein), if
%% it is close enough to be a misspelling: at most 2 edits, or a third of
%% the name's length for longer names.
-spec closest(atom() | string(), [atom()]) -> {ok, atom()} | none.
closest(Name, Known) when is_atom(Name) ->
    closest(atom_to_list(Name), Known);
closest(Name, Known) ->
    Scored = lists:sort([{distance(Name, atom_to_list(K)), K} || K <- Known]),
    case Scored of
        [{D, K} | _] when D =< 2; D =< length(Name) div 3 -> {ok, K};
        _ -> none
    end.

distance(A, B) ->
    First = lists:seq(0, length(B)),
    {Last, _} = lists:foldl(
                  fun(CA, {Prev, I}) ->
                          Row = distance_row(CA, B, Prev, [I]),
                          {Row, I + 1}
                  end, {First, 1}, A),
    lists:last(Last).

distance_row(_CA, [], _Prev, Acc) ->
    lists:reverse(Acc);
distance_row(CA, [CB | B], [Diag, Up | Prev], [Left | _] = Acc) ->
    Cost = case CA =:= CB of true -> 0; false -> 1 end,
    distance_row(CA, B, [Up | Prev], [min(min(Left + 1, Up + 1), Diag + Cost) | Acc]).

validate([], _Env, _Table, Acc) ->
    {ok, lists:reverse(Acc)};
validate([{Name, Default} | Rest], Env, Table, Acc) ->
    Value = proplists:get_value(Name, Env, Default),
    case kraken_config_check:check(Name, Value, Table) of
        {ok, Normal} ->
            validate(Rest, Env, Table, [{Name, Normal} | Acc]);
        {error, Expected} ->
            {error, lists:flatten(
                      io_lib:format("kraken: bad value for option ~s: ~0tp "
                                    "(expected ~s)", [Name, Value, Expected]))}
    end.

%% @doc The options of a validated configuration that the C engine reads.
-spec engine_options([option()]) -> [option()].
engine_options(Config) ->
    %% An option left undefined (redis_password) is not sent: the engine's
    %% default applies.
    [{Name, V} || {Name, _, _, _, _} <- table(),
                  (V = proplists:get_value(Name, Config)) =/= undefined].

%% @doc Validates a log level (an atom, in any case), normalising `warning'
%% to `warn'.
-spec check_log_level(term()) -> {ok, debug | info | warn | error} | {error, string()}.
check_log_level(Level) ->
    kraken_config_check:check_level(Level).

%% @doc The OTP logger level for one of our log levels.
-spec logger_level(debug | info | warn | error) -> logger:level().
logger_level(warn) -> warning;
logger_level(Level) -> Level.

%%% Internal functions

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
