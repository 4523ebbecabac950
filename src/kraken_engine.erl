%% @doc The owner of the C engine (priv/kraken_engine): a gen_server that
%% starts the engine as a port, performs the start-up handshake, relays the
%% admin requests and forwards the engine's log events to OTP logger.
%%
%% The control channel is described in docs/engine-protocol.md: packets of
%% 4-byte length + one external term, `{config, Options}' then `{ready, Port}'
%% or `{error, Reason}', then `{call, Ref, Request}' / `{reply, Ref, Result}'
%% and `{log, Level, Message}' at any time.
%%
%% If the engine exits, this process counts it (kraken_sup's restart
%% count, {@link kraken:engine_restarts/0}), logs it and stops with
%% `{shutdown, {engine_exit, Status}}', and its supervisor starts a new
%% engine. A `shutdown' reason spares the gen_server crash report, but not
%% the supervisor's: kraken_engine is a permanent child, so kraken_sup also
%% logs a `child_terminated' report with that reason.
-module(kraken_engine).
-behaviour(gen_server).

-export([start_link/1, call/1, call/2, port/0, os_pid/0, set_log_level/1,
         executable/1, priv_file/1, os_process_alive/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").

-define(READY_TIMEOUT, 10000).
-define(CALL_TIMEOUT, 10000).
-define(EXIT_WAIT, 3000).

-record(state, {port :: port() | undefined,
                os_pid :: integer() | undefined,
                listen_port :: integer(),
                next_ref = 1 :: pos_integer(),
                pending = #{} :: #{pos_integer() => gen_server:from()}}).

%%% API

%% @doc Starts the engine with a configuration validated by kraken_config.
-spec start_link([kraken_config:option()]) -> {ok, pid()} | {error, term()}.
start_link(Config) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, Config, []).

%% @doc Sends an admin request (see docs/engine-protocol.md) and returns the
%% engine's result.
-spec call(term()) -> term().
call(Request) ->
    call(Request, ?CALL_TIMEOUT).

-spec call(term(), timeout()) -> term().
call(Request, Timeout) ->
    gen_server:call(?MODULE, {call, Request}, Timeout).

%% @doc The TCP port the engine listens on (useful with tcp_server_port 0).
-spec port() -> inet:port_number().
port() ->
    gen_server:call(?MODULE, port).

%% @doc The OS process id of the running engine.
-spec os_pid() -> integer().
os_pid() ->
    gen_server:call(?MODULE, os_pid).

%% @doc Sets the log level of OTP logger (primary configuration) and of the
%% engine. The level survives an engine restart.
-spec set_log_level(atom()) -> ok | {error, string()}.
set_log_level(Level0) ->
    case kraken_config:check_log_level(Level0) of
        {ok, Level} ->
            ok = logger:set_primary_config(level, kraken_config:logger_level(Level)),
            ok = application:set_env(kraken, log_level, Level),
            call({set_log_level, Level});
        {error, Expected} ->
            {error, lists:flatten(io_lib:format("bad log level ~0tp (expected ~s)",
                                                [Level0, Expected]))}
    end.

%% @doc The engine executable: `engine_executable' if set, else
%% priv/kraken_engine of the kraken application.
-spec executable([kraken_config:option()]) -> {ok, string()} | {error, string()}.
executable(Config) ->
    case proplists:get_value(engine_executable, Config) of
        undefined ->
            case priv_file("kraken_engine") of
                {ok, Path} -> {ok, Path};
                {error, Candidates} -> {error, "engine executable not found (looked for " ++
                                            lists:join(", ", Candidates) ++ "; run make)"}
            end;
        Path ->
            case filelib:is_regular(Path) of
                true -> {ok, Path};
                false -> {error, "engine_executable " ++ Path ++ " not found"}
            end
    end.

%%% gen_server callbacks

%% @doc Starts the engine, sends it the configuration and waits (at most
%% 10 s) for it to listen. Fails the start if the engine reports an error.
init(Config) ->
    process_flag(trap_exit, true),
    case executable(Config) of
        {ok, Path} -> start_engine(Path, current_options(Config));
        {error, Msg} -> {stop, {shutdown, {engine_error, Msg}}}
    end.

%% @doc `{call, Request}' is relayed to the engine and answered when its
%% reply arrives; `port' and `os_pid' are answered at once.
handle_call({call, Request}, From, S = #state{port = Port, next_ref = Ref}) ->
    try port_command(Port, term_to_binary({call, Ref, Request})) of
        true -> {noreply, S#state{next_ref = Ref + 1,
                                  pending = maps:put(Ref, From, S#state.pending)}}
    catch
        error:badarg -> {reply, {error, engine_down}, S}   % its exit is on the way
    end;
handle_call(port, _From, S) ->
    {reply, S#state.listen_port, S};
handle_call(os_pid, _From, S) ->
    {reply, S#state.os_pid, S};
handle_call(Other, _From, S) ->
    {reply, {error, {unknown_call, Other}}, S}.

%% @doc No casts are used.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @doc Packets from the engine (replies and log events) and its exit.
handle_info({Port, {data, Bin}}, S = #state{port = Port}) ->
    {noreply, handle_packet(decode(Bin), S)};
handle_info({Port, {exit_status, Status}}, S = #state{port = Port}) ->
    Restarts = kraken_sup:count_engine_restart(),
    ?LOG_ERROR("kraken engine (os pid ~p) exited with status ~p~s; engine exits since "
               "the application started: ~b",
               [S#state.os_pid, Status, describe_status(Status), Restarts]),
    {stop, {shutdown, {engine_exit, Status}},
     fail_pending({engine_exit, Status}, S#state{port = undefined})};
handle_info({'EXIT', Port, Reason}, S = #state{port = Port}) ->
    Restarts = kraken_sup:count_engine_restart(),
    ?LOG_ERROR("kraken engine port closed: ~0p; engine exits since the application "
               "started: ~b", [Reason, Restarts]),
    {stop, {shutdown, {engine_exit, Reason}},
     fail_pending({engine_exit, Reason}, S#state{port = undefined})};
handle_info(_Other, S) ->
    {noreply, S}.

%% @doc Closes the engine's stdin, which makes it exit, and waits for it.
terminate(_Reason, #state{port = undefined}) ->
    ok;
terminate(_Reason, #state{port = Port, os_pid = OsPid}) ->
    catch port_close(Port),
    wait_exit(OsPid, ?EXIT_WAIT).

%%% Internal functions

start_engine(Path, Options) ->
    try open_port({spawn_executable, Path},
                  [{packet, 4}, binary, exit_status, use_stdio, {args, []}]) of
        Port ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            true = port_command(Port, term_to_binary({config, Options})),
            Deadline = erlang:monotonic_time(millisecond) + ?READY_TIMEOUT,
            case await_ready(Port, Deadline) of
                {ok, ListenPort} ->
                    %% (The engine itself logs "listening" at info.)
                    ?LOG_DEBUG("kraken engine ~s (os pid ~p) started", [Path, OsPid]),
                    {ok, #state{port = Port, os_pid = OsPid,
                                listen_port = ListenPort}};
                {error, Reason} ->
                    catch port_close(Port),
                    wait_exit(OsPid, ?EXIT_WAIT),
                    {stop, {shutdown, {engine_error, Reason}}}
            end
    catch
        error:Why ->
            {stop, {shutdown, {engine_error,
                               io_lib:format("cannot run ~s: ~p", [Path, Why])}}}
    end.

await_ready(Port, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {data, Bin}} ->
            case decode(Bin) of
                {ready, ListenPort} when is_integer(ListenPort) ->
                    {ok, ListenPort};
                {error, Reason} ->
                    {error, Reason};
                {log, _, _} = Log ->
                    log(Log),
                    await_ready(Port, Deadline);
                Other ->
                    {error, io_lib:format("unexpected packet from engine: ~0p",
                                          [Other])}
            end;
        {Port, {exit_status, Status}} ->
            {error, io_lib:format("engine exited with status ~p~s before "
                                  "listening", [Status, describe_status(Status)])};
        {'EXIT', Port, Reason} ->
            {error, io_lib:format("engine port closed: ~p", [Reason])}
    after Left ->
            {error, "engine did not report ready within 10 s"}
    end.

%% The configured options, except that the log level is the current one
%% (set_log_level may have changed it before an engine restart), plus the
%% number of times this node restarted the engine (engine_restarts) and, in
%% a cluster, cluster_wait: the engine serves no client before kraken_cluster
%% sent it its first view (docs/cluster.md).
current_options(Config) ->
    Options = kraken_config:engine_options(Config) ++
        [{cluster_wait, 1} || kraken_cluster:clustered(Config)],
    WithRestarts = lists:keystore(engine_restarts, 1, Options,
                                  {engine_restarts, kraken_sup:engine_restarts()}),
    case kraken_config:check_log_level(application:get_env(kraken, log_level, info)) of
        {ok, Level} -> lists:keystore(log_level, 1, WithRestarts, {log_level, Level});
        {error, _} -> WithRestarts
    end.

decode(Bin) ->
    try binary_to_term(Bin)
    catch error:badarg -> {undecodable, Bin}
    end.

handle_packet({reply, Ref, Result}, S = #state{pending = Pending}) ->
    case maps:take(Ref, Pending) of
        {From, Rest} ->
            gen_server:reply(From, Result),
            S#state{pending = Rest};
        error ->
            ?LOG_WARNING("kraken engine replied to unknown request ~p", [Ref]),
            S
    end;
handle_packet({log, _, _} = Log, S) ->
    log_bounded(Log),
    S;
handle_packet(Other, S) ->
    ?LOG_WARNING("unexpected packet from kraken engine: ~0p", [Other]),
    S.

%% Log events are dropped, and counted, while more than ?LOG_QUEUE_MAX
%% messages wait for this process (its logger calls are slower than the
%% engine's events: a slow log handler, a flood at debug level), so its
%% mailbox stays bounded. The engine sends at most 2000 events a second per
%% level group (LOG_RATE in c_src/control_log.c), which an unimpeded process
%% handles with no drop. The count is logged in one line once the mailbox is
%% down to half the bound (the next event reports it: not at every dip below
%% the bound); it is kept in the process dictionary so that this stays local
%% to these functions.
-define(LOG_QUEUE_MAX, 5000).

log_bounded(Log) ->
    {message_queue_len, Waiting} = process_info(self(), message_queue_len),
    Dropped = case get(kraken_log_dropped) of
                  undefined -> 0;
                  N -> N
              end,
    if
        Waiting > ?LOG_QUEUE_MAX ->
            put(kraken_log_dropped, Dropped + 1),
            ok;
        Dropped > 0, Waiting =< ?LOG_QUEUE_MAX div 2 ->
            erase(kraken_log_dropped),
            ?LOG_WARNING("~b kraken engine log events dropped: more than ~b messages were "
                         "waiting for kraken_engine", [Dropped, ?LOG_QUEUE_MAX]),
            log(Log);
        true ->
            log(Log)
    end.

log({log, Level, Msg}) ->
    L = case lists:member(Level, [emergency, alert, critical, error, warning,
                                  notice, info, debug]) of
            true -> Level;
            false -> notice
        end,
    logger:log(L, "~s", [Msg], #{kraken => engine}).

fail_pending(Reason, S = #state{pending = Pending}) ->
    [gen_server:reply(From, {error, Reason}) || From <- maps:values(Pending)],
    S#state{pending = #{}}.

describe_status(Status) when is_integer(Status), Status > 128 ->
    io_lib:format(" (killed by signal ~b)", [Status - 128]);
describe_status(_) ->
    "".

%% Waits for the engine process to be gone, killing it if it lingers.
wait_exit(undefined, _) ->
    ok;
wait_exit(OsPid, Left) ->
    case os_process_alive(OsPid) of
        false ->
            ok;
        true when Left =< 0 ->
            ?LOG_WARNING("kraken engine (os pid ~p) did not exit; killing it",
                         [OsPid]),
            _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
            ok;
        true ->
            timer:sleep(10),
            wait_exit(OsPid, Left - 10)
    end.

%% @doc Whether an OS process (pid as integer or string) exists and is not a zombie.
-spec os_process_alive(integer() | string()) -> boolean().
os_process_alive(OsPid) when is_integer(OsPid) ->
    os_process_alive(integer_to_list(OsPid));
os_process_alive(OsPid) ->
    case file:read_file("/proc/" ++ OsPid ++ "/stat") of
        {ok, Stat} ->
            %% "pid (comm) S ...": the state follows the last ')'.
            [_, After] = string:split(Stat, <<")">>, trailing),
            case string:trim(After, leading) of
                <<"Z", _/binary>> -> false;
                <<"X", _/binary>> -> false;
                _ -> true
            end;
        {error, _} ->
            false
    end.

%% @doc A file of the application's priv directory (the engine and its
%% option table): `{error, Candidates}' lists where it was looked for.
-spec priv_file(string()) -> {ok, string()} | {error, [string()]}.
priv_file(Name) ->
    Candidates = priv_candidates(Name),
    case [P || P <- Candidates, filelib:is_regular(P)] of
        [Path | _] -> {ok, Path};
        [] -> {error, Candidates}
    end.

priv_candidates(Name) ->
    Priv = case code:priv_dir(kraken) of
               {error, _} -> [];
               Dir -> [filename:join(Dir, Name)]
           end,
    %% The project's own priv/ when running from _build/<profile>/lib/kraken/ebin.
    Root = case code:which(?MODULE) of
               Beam when is_list(Beam) ->
                   Ebin = filename:dirname(filename:absname(Beam)),
                   [filename:join([Ebin, "..", "..", "..", "..", "priv", Name])];
               _ -> []
           end,
    dedup([normalise(P) || P <- Priv ++ Root]).

dedup([]) -> [];
dedup([P | Rest]) -> [P | dedup([Q || Q <- Rest, Q =/= P])].

%% An absolute path with "." and ".." resolved lexically.
normalise(Path) ->
    normalise(filename:split(filename:absname(Path)), []).

normalise([], Acc) -> filename:join(lists:reverse(Acc));
normalise(["." | T], Acc) -> normalise(T, Acc);
normalise([".." | T], [_Root] = Acc) -> normalise(T, Acc);
normalise([".." | T], [_ | Acc]) -> normalise(T, Acc);
normalise([H | T], Acc) -> normalise(T, [H | Acc]).
