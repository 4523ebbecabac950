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
-module(kraken_config).

-export([load/0, read/0, log_warnings/1, validate/1, defaults/0, engine_options/1,
         engine_table/0, check_log_level/1, logger_level/1, check_flags/1,
         check_command_line/0, check_command_line/1, check_config_file/1, closest/2]).

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
    case check_command_line() of
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

%% @doc {@link check_command_line/1} of this node's arguments.
-spec check_command_line() -> {ok, [{atom(), atom(), term()}]} | {error, string()}.
check_command_line() ->
    check_command_line(init:get_arguments()).

%% @doc Checks the `-kraken' and `-octopus' flags among the arguments of
%% `init:get_arguments()' (in their order) before OTP reads them: each must
%% give a name and a value that is an Erlang term (OTP itself drops a name
%% without a value, and stops the application's load with an error report
%% on a value it cannot parse). A negative integer value (`-kraken
%% max_tcp_clients -5') reaches erl as a flag of its own (`-5'): it is
%% joined to its name again, and returned as `{App, Name, Value}' for the
%% caller to set, since OTP did not.
-spec check_command_line([{atom(), [string()]}]) ->
          {ok, [{atom(), atom(), term()}]} | {error, string()}.
check_command_line(Args) ->
    command_line(Args, []).

command_line([{Flag, Values} | Rest], Acc) when Flag =:= kraken; Flag =:= octopus ->
    case {Values, Rest} of
        {[Name, Text], _} ->
            case parse_value(Text) of
                {ok, _} ->
                    command_line(Rest, Acc);
                error ->
                    {error, flat("kraken: bad command-line value for option ~ts: ~ts "
                                 "(-~s values are Erlang terms: quote strings, e.g. "
                                 "-~s listen_ip '\"127.0.0.1\"')",
                                 [Name, Text, Flag, Flag])}
            end;
        {[Name], [{Negative, []} | Rest1]} ->
            case negative(Negative) of
                {ok, Value} ->
                    command_line(Rest1, [{Flag, list_to_atom(Name), Value} | Acc]);
                error ->
                    check_flags([{Flag, [Values]}])
            end;
        _ ->
            check_flags([{Flag, [Values]}])
    end;
command_line([_ | Rest], Acc) ->
    command_line(Rest, Acc);
command_line([], Acc) ->
    {ok, lists:reverse(Acc)}.

%% A value as OTP's application controller reads it.
parse_value(Text) ->
    case erl_scan:string(Text ++ ".") of
        {ok, Tokens, _} ->
            case erl_parse:parse_term(Tokens) of
                {ok, Term} -> {ok, Term};
                {error, _} -> error
            end;
        _ ->
            error
    end.

%% The flag `-5' is the value -5.
negative(Flag) ->
    Digits = atom_to_list(Flag),
    case Digits =/= "" andalso lists:all(fun(C) -> C >= $0 andalso C =< $9 end, Digits) of
        true -> {ok, -list_to_integer(Digits)};
        false -> error
    end.

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
    case check(Name, Value, Table) of
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
    check_level(Level).

%% @doc The OTP logger level for one of our log levels.
-spec logger_level(debug | info | warn | error) -> logger:level().
logger_level(warn) -> warning;
logger_level(Level) -> Level.

%%% Internal functions

check(pid_file, V, _) -> check_path(V);
check(log_file, V, _) -> check_path(V);
check(engine_executable, V, _) -> check_path(V);
check(role, V, _) when V =:= core; V =:= proxy -> {ok, V};
check(role, _, _) -> {error, "core or proxy"};
check(cluster_nodes, V, _) -> check_list(V, fun check_node/1, "a list of node names");
check(parents, V, _) -> check_list(V, fun check_node/1, "a list of node names");
check(upstreams, V, _) -> check_list(V, fun check_endpoint/1, "a list of \"host:port\" strings");
check(upstream_poll_ms, V, _) -> check_int(V, 10, 3600000);
check(cluster_advertise, V, _) -> check_advertise(V);
check(cluster_join_only, V, _) when is_boolean(V) -> {ok, V};
check(cluster_join_only, _, _) -> {error, "true or false"};
check(Name, V, Table) ->
    case lists:keyfind(Name, 1, Table) of
        {_, integer, Min, Max, _} -> check_int(V, Min, Max);
        {_, ip_address, _, _, _} -> check_ip(V);
        {_, log_level, _, _, _} -> check_level(V);
        {_, string, _, _, _} -> check_text(V)
    end.

%% A string option of the engine (redis_password): a non-empty binary,
%% string or atom, sent as a binary of at most 255 bytes.
check_text(undefined) ->
    {ok, undefined};
check_text(V) when is_atom(V) ->
    check_text(atom_to_binary(V));
check_text(V) when is_binary(V); is_list(V) ->
    case to_string(V) of
        error -> {error, "a string"};
        "" -> {error, "a non-empty string"};
        Str ->
            Bin = unicode:characters_to_binary(Str),
            case byte_size(Bin) =< 255 of
                true -> {ok, Bin};
                false -> {error, "a string of at most 255 bytes"}
            end
    end;
check_text(_) ->
    {error, "a string"}.

%% Any case: DEBUG, Info; `warning' is `warn'.
check_level(V) when is_atom(V) ->
    case string:lowercase(atom_to_list(V)) of
        L when L =:= "debug"; L =:= "info"; L =:= "warn"; L =:= "error" ->
            {ok, list_to_atom(L)};
        "warning" ->
            {ok, warn};
        _ ->
            {error, "debug, info, warn or error"}
    end;
check_level(_) ->
    {error, "debug, info, warn or error"}.

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

-define(ADVERTISE_EXPECTED, "a host name or an IP address other than 0.0.0.0 and ::, "
                            "e.g. \"10.0.0.5\" or \"web1.example.com\"").

%% cluster_advertise: an address (a tuple, or its text) or a host name (an
%% atom or a string), as a binary: an address in its usual text, a name as
%% given (kraken_cluster_ops:advertise/1 resolves it at start). The
%% unspecified addresses cannot be connected to.
check_advertise(undefined) ->
    {ok, undefined};
check_advertise(T) when is_tuple(T) ->
    case valid_ip_tuple(T) of
        true -> check_advertise(inet:ntoa(T));
        false -> {error, ?ADVERTISE_EXPECTED}
    end;
check_advertise(any) ->
    {error, ?ADVERTISE_EXPECTED};   % listen_ip's every address: not one to connect to
check_advertise(A) when is_atom(A) ->
    check_advertise(atom_to_list(A));
check_advertise(S) when is_binary(S); is_list(S) ->
    case to_string(S) of
        error ->
            {error, ?ADVERTISE_EXPECTED};
        Str ->
            case inet:parse_strict_address(Str) of
                {ok, {0, 0, 0, 0}} -> {error, ?ADVERTISE_EXPECTED};
                {ok, {0, 0, 0, 0, 0, 0, 0, 0}} -> {error, ?ADVERTISE_EXPECTED};
                {ok, Addr} -> {ok, list_to_binary(inet:ntoa(Addr))};
                {error, _} ->
                    case host_name(Str) of
                        true -> {ok, list_to_binary(Str)};
                        false -> {error, ?ADVERTISE_EXPECTED}
                    end
            end
    end;
check_advertise(_) ->
    {error, ?ADVERTISE_EXPECTED}.

%% A DNS host name (RFC 1123, with `_' as resolvers accept it): dot-separated
%% labels of letters, digits, `-' and `_', 1..63 characters each, not
%% starting or ending with `-', the last one not all digits, at most 253
%% characters, an optional final dot.
host_name(Str) ->
    Name = case lists:suffix(".", Str) of
               true -> lists:droplast(Str);
               false -> Str
           end,
    Labels = string:split(Name, ".", all),
    %% An all-numeric last label would be read as an address ("10.5").
    Name =/= "" andalso length(Name) =< 253 andalso lists:all(fun label/1, Labels) andalso
        not lists:all(fun(C) -> C >= $0 andalso C =< $9 end, lists:last(Labels)).

label(L) ->
    L =/= "" andalso length(L) =< 63 andalso hd(L) =/= $- andalso lists:last(L) =/= $- andalso
        lists:all(fun(C) -> (C >= $a andalso C =< $z) orelse (C >= $A andalso C =< $Z) orelse
                                (C >= $0 andalso C =< $9) orelse C =:= $- orelse C =:= $_
                  end, L).

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
