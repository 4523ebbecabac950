%% @doc The kraken application callback module. At start it validates the
%% configuration (kraken_config), applies the logging options (log_level,
%% log_file), writes the pid_file and starts kraken_sup; at stop it removes
%% the pid_file and restores the console logging. OTP's progress reports
%% (info level) are filtered out while the application runs, so that the
%% info level shows Kraken's own messages only.
-module(kraken_app).
-behaviour(application).

-export([start/2, stop/1]).

-include_lib("kernel/include/logger.hrl").

-define(FILE_HANDLER, kraken_log_file).
-define(NO_PROGRESS, kraken_no_progress).

%% @doc Application callback. Fails with `{bad_config, Message}' for a bad
%% option, or with the supervisor's error (which holds the engine's
%% `{engine_error, Reason}') if the engine cannot start.
start(_Type, _Args) ->
    case kraken_config:load() of
        {ok, Config} -> start_with(Config);
        {error, Msg} -> {error, {bad_config, Msg}}
    end.

%% @doc Application callback: removes the pid file and restores logging.
stop(State) ->
    cleanup(State),
    ok.

%%% Internal functions

start_with(Config) ->
    Level = proplists:get_value(log_level, Config),
    ok = application:set_env(kraken, log_level, Level),
    OldLevel = maps:get(level, logger:get_primary_config()),
    ok = logger:set_primary_config(level, kraken_config:logger_level(Level)),
    _ = logger:add_primary_filter(?NO_PROGRESS, {fun logger_filters:progress/2, stop}),
    State0 = #{old_level => OldLevel},
    case setup_log_file(proplists:get_value(log_file, Config), State0) of
        {ok, State1} ->
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

%% log_file: log through a file handler instead of the console handler.
setup_log_file(undefined, State) ->
    {ok, State};
setup_log_file(File, State) ->
    HandlerConfig = #{config => #{file => File},
                      formatter => {logger_formatter,
                                    #{single_line => true,
                                      template => [time, " ", level, ": ", msg, "\n"]}}},
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
