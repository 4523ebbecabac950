%% @doc What erl reads before the kraken application does: the `-kraken'
%% and `-octopus' command-line flags and the `-config' files, checked so
%% that a mistake there is said in one line instead of erl's own reaction
%% (it drops a flag without a value, and stops with a crash dump or an
%% error report on a file or a value it cannot parse).
%%
%% check_command_line/0 runs in kraken_config:read/0, at the
%% application's start: each flag must give a name and a value that is an
%% Erlang term; a negative integer value, which reaches erl as a flag of
%% its own, is joined to its name again and returned for the caller to
%% set. check_config_file/1 runs on bin/kraken's first, non-distributed
%% node (kraken_ctl:check_config/0) before the server node is started: it
%% reads each file as erl's application controller does (one list ended
%% by a dot, in the file's encoding), and the files a sys.config names
%% too.
-module(kraken_config_args).

-export([check_command_line/0, check_command_line/1, check_flags/1, check_config_file/1]).

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

