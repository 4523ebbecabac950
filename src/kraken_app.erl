%% @doc The kraken application callback module. At start it validates the
%% configuration (kraken_config), checks that the listen address is free,
%% applies the logging options (log_level, log_file), writes the pid_file
%% and starts kraken_sup; at stop it removes the pid_file and restores the
%% logging configuration. OTP's progress reports (info level) are filtered
%% out while the application runs, so that the info level shows Kraken's own
%% messages only. Log lines are single-line, `<time> <level>: <message>',
%% on the console (unless its format was configured otherwise) and in the
%% log_file.
%%
%% If the supervisor gives up (the engine died more than 10 times in 10 s)
%% on a node started by bin/kraken ({@link kraken:boot/0}), the node halts
%% with status 1 instead of staying up without a server.
-module(kraken_app).
-behaviour(application).

-export([start/2, prep_stop/1, stop/1]).

-include_lib("kernel/include/logger.hrl").

-define(FILE_HANDLER, kraken_log_file).
-define(NO_PROGRESS, kraken_no_progress).

%% @doc Application callback. Fails with `{bad_config, Message}' for a bad
%% option, or with the supervisor's error (which holds the engine's
%% `{engine_error, Reason}') if the engine cannot start.
start(_Type, _Args) ->
    case kraken_config:read() of
        {ok, Config, Warnings} ->
            case check_listen(Config) of
                ok -> start_with(Config, Warnings);
                {error, _} = Error -> Error
            end;
        {error, Msg} ->
            {error, {bad_config, Msg}}
    end.

%% @doc Application callback, called before the supervision tree stops:
%% notes whether the tree is still there (an ordinary stop) or is already
%% gone (the supervisor gave up).
prep_stop(State) ->
    State#{gave_up => whereis(kraken_sup) =:= undefined}.

%% @doc Application callback: removes the pid file and restores logging;
%% halts a node started by bin/kraken if the supervisor gave up.
stop(State) ->
    GaveUp = maps:get(gave_up, State, false),
    case GaveUp of
        true -> ?LOG_ERROR("kraken: the engine exited too often (more than 10 times "
                           "in 10 s); the kraken application stops");
        false -> ok
    end,
    cleanup(State),
    case GaveUp andalso kraken:booted() of
        true ->
            io:format(standard_error, "kraken: the engine exited too often (more than "
                      "10 times in 10 s); halting the node~n", []),
            _ = (catch logger_std_h:filesync(default)),
            erlang:halt(1);
        false ->
            ok
    end.

%%% Internal functions

start_with(Config, Warnings) ->
    Level = proplists:get_value(log_level, Config),
    ok = application:set_env(kraken, log_level, Level),
    OldLevel = maps:get(level, logger:get_primary_config()),
    ok = logger:set_primary_config(level, kraken_config:logger_level(Level)),
    _ = logger:add_primary_filter(?NO_PROGRESS, {fun logger_filters:progress/2, stop}),
    State0 = #{old_level => OldLevel},
    case setup_log(proplists:get_value(log_file, Config), State0) of
        {ok, State1} ->
            kraken_config:log_warnings(Warnings),
            case write_pid_file(proplists:get_value(pid_file, Config), State1) of
                {ok, State} ->
                    case kraken_sup:start_link(Config) of
                        {ok, Pid} ->
                            {ok, Pid, State};
                        {error, _} = Error ->
                            cleanup(State),
                            Error
                    end;
                {error, _} = Error ->
                    cleanup(State1),
                    Error
            end;
        {error, _} = Error ->
            cleanup(State0),
            Error
    end.

%% The one-line format of Kraken's log lines.
formatter() ->
    {logger_formatter, #{single_line => true,
                         template => [time, " ", level, ": ", msg, "\n"]}}.

%% No log_file: the console handler's stock (multi-line) format becomes
%% the one-line format. With a log_file: a file handler replaces the console
%% handler (with the console's filters).
setup_log(undefined, State) ->
    case logger:get_handler_config(default) of
        {ok, #{formatter := {logger_formatter, #{legacy_header := true}} = Old}} ->
            ok = logger:set_handler_config(default, formatter, formatter()),
            {ok, State#{console_formatter => Old}};
        _ ->
            {ok, State}
    end;
setup_log(File, State) ->
    Filters = case logger:get_handler_config(default) of
                  {ok, #{filters := F, filter_default := FD}} ->
                      #{filters => F, filter_default => FD};
                  _ ->
                      #{}
              end,
    HandlerConfig = Filters#{config => #{file => File}, formatter => formatter()},
    case logger:add_handler(?FILE_HANDLER, logger_std_h, HandlerConfig) of
        ok ->
            Default = case logger:get_handler_config(default) of
                          {ok, DefaultConfig} ->
                              _ = logger:remove_handler(default),
                              DefaultConfig;
                          {error, _} ->
                              undefined
                      end,
            {ok, State#{log_file => File, default_handler => Default}};
        {error, Reason} ->
            {error, {bad_config, lists:flatten(
                                   io_lib:format("kraken: cannot open log_file ~ts: ~0p",
                                                 [File, Reason]))}}
    end.

%% Refuses a listen address the engine could not bind (port in use, address
%% not on this host, privileged port) with a line naming both options.
check_listen(Config) ->
    Port = proplists:get_value(tcp_server_port, Config),
    IpText = binary_to_list(proplists:get_value(listen_ip, Config)),
    {ok, Ip} = inet:parse_strict_address(IpText),
    Family = case tuple_size(Ip) of 4 -> inet; 8 -> inet6 end,
    case gen_tcp:listen(Port, [Family, {ip, Ip}, {reuseaddr, true}]) of
        {ok, Socket} ->
            gen_tcp:close(Socket);
        {error, Reason} ->
            {error, {bad_config,
                     lists:flatten(io_lib:format("kraken: cannot listen on listen_ip ~s "
                                                 "tcp_server_port ~b: ~s",
                                                 [IpText, Port, inet:format_error(Reason)]))}}
    end.

write_pid_file(undefined, State) ->
    {ok, State};
write_pid_file(File, State) ->
    case file:write_file(File, [os:getpid(), "\n"]) of
        ok ->
            {ok, State#{pid_file => File}};
        {error, Reason} ->
            {error, {bad_config, lists:flatten(
                                   io_lib:format("kraken: cannot write pid_file ~ts: ~s",
                                                 [File, file:format_error(Reason)]))}}
    end.

cleanup(State) ->
    case maps:find(pid_file, State) of
        {ok, PidFile} -> _ = file:delete(PidFile);
        error -> ok
    end,
    %% (A node started by bin/kraken keeps the one-line format to the end.)
    case maps:find(console_formatter, State) of
        {ok, Formatter} ->
            case kraken:booted() of
                true -> ok;
                false -> _ = logger:set_handler_config(default, formatter, Formatter)
            end;
        error ->
            ok
    end,
    case maps:find(log_file, State) of
        {ok, _} ->
            _ = logger:remove_handler(?FILE_HANDLER),
            case maps:get(default_handler, State) of
                #{module := Module} = Default ->
                    _ = logger:add_handler(default, Module, Default);
                undefined ->
                    ok
            end;
        error ->
            ok
    end,
    _ = logger:remove_primary_filter(?NO_PROGRESS),
    _ = logger:set_primary_config(level, maps:get(old_level, State)),
    ok.
