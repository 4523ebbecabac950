%% @doc The kraken application callback module. At start it validates the
%% configuration (kraken_config), checks that the listen address is free,
%% resolves the host name cluster_advertise may give, applies the logging
%% options (log_level, log_file), writes the pid_file and starts
%% kraken_sup; at stop it removes the pid_file and restores the logging
%% configuration. OTP's progress reports (info level) are filtered
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
                ok ->
                    %% cluster_advertise's host name, resolved once, here: one
                    %% that does not resolve refuses the start.
                    case kraken_cluster_ops:advertise(Config) of
                        {ok, Config1} -> start_with(Config1, Warnings ++ lone_proxy(Config1));
                        {error, Msg} -> {error, {bad_config, Msg}}
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, Msg} ->
            {error, {bad_config, Msg}}
    end.

%% @doc Application callback, called before the supervision tree stops:
%% notes whether the tree is still there (an ordinary stop) or is already
%% gone (the supervisor gave up).
prep_stop(State) ->
    GaveUp = whereis(kraken_sup) =:= undefined,
    GaveUp orelse ?LOG_INFO("kraken stopping: closing the engine and every client "
                            "connection"),
    State#{gave_up => GaveUp}.

%% @doc Application callback: removes the pid file and restores logging;
%% halts a node started by bin/kraken if the supervisor gave up.
stop(State) ->
    GaveUp = maps:get(gave_up, State, false),
    case GaveUp of
        true -> ?LOG_ERROR("kraken: the engine exited too often (more than 10 times "
                           "in 10 s); the kraken application stops");
        false -> ?LOG_INFO("kraken stopped")
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
    State0 = #{old_level => OldLevel},
    %% The pid_file first: a start it refuses leaves no log_file (nor its
    %% directory) behind.
    case write_pid_file(proplists:get_value(pid_file, Config), State0) of
        {ok, State1} ->
            ok = logger:set_primary_config(level, kraken_config:logger_level(Level)),
            _ = logger:add_primary_filter(?NO_PROGRESS, {fun logger_filters:progress/2, stop}),
            case setup_log(proplists:get_value(log_file, Config), State1) of
                {ok, State} ->
                    kraken_config:log_warnings(Warnings),
                    case kraken:start_warnings() of
                        Warnings -> ok;
                        _ -> persistent_term:put({kraken, start_warnings}, Warnings)
                    end,
                    case kraken_sup:start_link(Config) of
                        {ok, Pid} ->
                            {ok, Vsn} = application:get_key(kraken, vsn),
                            ?LOG_INFO("kraken ~s started (os pid ~s)",
                                      [Vsn, os:getpid()]),
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
            Error
    end.

%% The one-line format of Kraken's log lines: time, node, level, message.
formatter() ->
    {logger_formatter, #{single_line => true,
                         template => [time, " ", atom_to_list(node()), " ", level, ": ",
                                      msg, "\n"]}}.

%% The handler's overload protection. OTP's defaults drop events silently
%% beyond 500 a second (burst_limit_max_count) or 200 waiting (drop_mode_qlen):
%% one client's burst of protocol errors then hid other clients' lines, with
%% no count anywhere. The engine already bounds its rate (2000 events a
%% second per level group) and kraken_engine its mailbox (5000, counted and
%% reported), so the handler keeps only sync mode (past 10 waiting, the
%% caller waits for the write), which pushes back on kraken_engine, whose
%% bound then drops and counts.
overload_config() ->
    #{burst_limit_enable => false, drop_mode_qlen => 20000, flush_qlen => 40000}.

%% No log_file: the console handler's stock (multi-line) format becomes
%% the one-line format. With a log_file: a file handler replaces the console
%% handler (with the console's filters).
setup_log(undefined, State) ->
    case logger:get_handler_config(default) of
        {ok, #{formatter := {logger_formatter, #{legacy_header := true}} = Old,
               config := OldConfig}} ->
            ok = logger:set_handler_config(default, formatter, formatter()),
            _ = logger:update_handler_config(default, config, overload_config()),
            Saved = maps:with(maps:keys(overload_config()), OldConfig),
            {ok, State#{console_formatter => Old, console_overload => Saved}};
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
    HandlerConfig = Filters#{config => (overload_config())#{file => File},
                             formatter => formatter()},
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
                                   io_lib:format("kraken: cannot open log_file ~ts: ~ts",
                                                 [File, open_error(Reason)]))}}
    end.

%% logger_std_h's reason for a file it could not open, as one phrase.
open_error({handler_not_added, Reason}) ->
    open_error(Reason);
open_error({open_failed, _File, Reason}) ->
    open_error(Reason);
open_error(Reason) when is_atom(Reason) ->
    file:format_error(Reason);
open_error(Reason) ->
    io_lib:format("~0tp", [Reason]).

%% A proxy given nothing to join (an operator's slip, most often: a proxy
%% alone refuses every publish) starts all the same, since a core may name
%% it in its own cluster_nodes, but with a warning on the terminal.
lone_proxy(Config) ->
    case proplists:get_value(role, Config, core) =:= proxy andalso
        [] =:= proplists:get_value(cluster_nodes, Config, []) andalso
        [] =:= proplists:get_value(parents, Config, []) andalso
        [] =:= proplists:get_value(upstreams, Config, []) of
        true -> ["kraken: role proxy without cluster_nodes, parents or upstreams: this proxy "
                 "reaches no core and refuses every publish until a core names it in its "
                 "cluster_nodes"];
        false -> []
    end.

%% Refuses a listen address the engine could not bind (port in use, address
%% not on this host, privileged port) with a line naming both options: the
%% Kraken port, and the Redis and HTTP ports when they are set (a fixed
%% one: 0 takes any free port, -1 is off).
check_listen(Config) ->
    IpText = binary_to_list(proplists:get_value(listen_ip, Config)),
    {ok, Ip} = inet:parse_strict_address(IpText),
    Family = case tuple_size(Ip) of 4 -> inet; 8 -> inet6 end,
    Ports = [{Opt, Port} || Opt <- [tcp_server_port, redis_port, http_port],
                            Port <- [proplists:get_value(Opt, Config, -1)],
                            Opt =:= tcp_server_port orelse Port > 0],
    Numbered = lists:zip(lists:seq(1, length(Ports)), Ports),
    case [{A, B, P} || {I, {A, P}} <- Numbered, {J, {B, Q}} <- Numbered, I < J, P =:= Q, P > 0] of
        [{A, B, P} | _] ->
            %% Each binds alone (the check below closes each socket before
            %% the next); the engine would fail on the second.
            {error, {bad_config,
                     lists:flatten(io_lib:format("kraken: ~s and ~s are both ~b: each needs a "
                                                 "port of its own", [B, A, P]))}};
        [] ->
            check_listen(Family, Ip, IpText, Ports)
    end.

check_listen(_Family, _Ip, _IpText, []) ->
    ok;
check_listen(Family, Ip, IpText, [{Opt, Port} | Rest]) ->
    case gen_tcp:listen(Port, [Family, {ip, Ip}, {reuseaddr, true}]) of
        {ok, Socket} ->
            gen_tcp:close(Socket),
            check_listen(Family, Ip, IpText, Rest);
        {error, Reason} ->
            {error, {bad_config,
                     lists:flatten(io_lib:format("kraken: cannot listen on listen_ip ~s "
                                                 "~s ~b: ~s",
                                                 [IpText, Opt, Port,
                                                  inet:format_error(Reason)]))}}
    end.

write_pid_file(undefined, State) ->
    {ok, State};
write_pid_file(File, State) ->
    case pid_file_owner(File) of
        {running, OsPid} ->
            {error, {bad_config,
                     lists:flatten(io_lib:format("kraken: pid_file ~ts names a running process "
                                                 "(os pid ~s): is another kraken node using it?",
                                                 [File, OsPid]))}};
        _ ->
            case file:write_file(File, [os:getpid(), "\n"]) of
                ok ->
                    {ok, State#{pid_file => File}};
                {error, Reason} ->
                    {error, {bad_config,
                             lists:flatten(io_lib:format("kraken: cannot write pid_file ~ts: ~s",
                                                         [File, file:format_error(Reason)]))}}
            end
    end.

%% Whose pid an existing pid_file holds: this node's (`self'), another
%% live process's, or none alive (a stale file left by a killed node).
pid_file_owner(File) ->
    case file:read_file(File) of
        {ok, Bin} ->
            OsPid = string:trim(binary_to_list(Bin)),
            Me = os:getpid(),
            case OsPid =/= "" andalso lists:all(fun(C) -> C >= $0 andalso C =< $9 end, OsPid) of
                true when OsPid =:= Me -> self;
                true ->
                    case kraken_engine:os_process_alive(OsPid) of
                        true -> {running, OsPid};
                        false -> stale
                    end;
                false ->
                    stale
            end;
        {error, _} ->
            none
    end.

cleanup(State) ->
    %% Only while it is still ours: another node may have replaced it.
    case maps:find(pid_file, State) of
        {ok, PidFile} ->
            case pid_file_owner(PidFile) of
                self -> _ = file:delete(PidFile);
                _ -> ok
            end;
        error ->
            ok
    end,
    %% (A node started by bin/kraken keeps the one-line format to the end.)
    case maps:find(console_formatter, State) of
        {ok, Formatter} ->
            case kraken:booted() of
                true -> ok;
                false ->
                    _ = logger:set_handler_config(default, formatter, Formatter),
                    _ = logger:update_handler_config(default, config,
                                                     maps:get(console_overload, State, #{}))
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
