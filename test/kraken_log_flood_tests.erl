%% @doc Engine log events end to end under a flood, with a slow consumer:
%% the mailbox of kraken_engine stays bounded and every event is either
%% logged or counted (by the engine's rate limit, in `log_events_dropped',
%% or by kraken_engine's mailbox bound, in its summary line).
%%
%% The application runs in this node with `router_min_publish_to_topics_to_warn'
%% 1, so every published entry is an engine warning. A logger handler of
%% this module sleeps 2 ms per event: logger handlers run in the process
%% that logs, so this makes kraken_engine handle ~500 events a second while
%% the engine sends 2000 a second for 5 s.
-module(kraken_log_flood_tests).

-include_lib("eunit/include/eunit.hrl").

%% logger handler callback
-export([log/2]).

-define(HANDLER, kraken_log_flood_capture).
-define(QUEUE_MAX, 5000).  % LOG_QUEUE_MAX in src/kraken_engine.erl

flood_test_() ->
    {setup, fun start/0, fun stop/1,
     [{timeout, 120, {"flood with a slow log handler", fun flood/0}}]}.

start() ->
    _ = application:stop(kraken),
    _ = application:load(kraken),
    [ok = application:set_env(kraken, K, V)
     || {K, V} <- kraken_config:defaults() ++
            [{listen_ip, "127.0.0.1"}, {tcp_server_port, 0}, {log_level, warn},
             {router_min_publish_to_topics_to_warn, 1}]],
    %% 50,000 warnings are not for the console.
    _ = logger:add_handler_filter(default, ?HANDLER, {fun quiet/2, []}),
    ok = kraken:start().

quiet(#{meta := #{kraken := engine}}, _) -> stop;
quiet(Event, _) -> Event.

stop(_) ->
    _ = logger:remove_handler(?HANDLER),
    _ = logger:remove_handler_filter(default, ?HANDLER),
    ok = application:stop(kraken),
    [ok = application:set_env(kraken, K, V) || {K, V} <- kraken_config:defaults()],
    ok.

flood() ->
    Self = self(),
    ok = logger:add_handler(?HANDLER, ?MODULE,
                            #{config => #{pid => Self, sleep => 2}, level => all}),
    Engine = whereis(kraken_engine),
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, kraken_engine:port(),
                                 [binary, {active, false}, {packet, raw}]),
    %% 5 s of 10 publishes a second of 1000 entries: 50,000 warnings.
    Batches = 50,
    PerBatch = 1000,
    Sampler = spawn_link(fun() -> sample(Engine, 0, Self) end),
    T0 = erlang:monotonic_time(millisecond),
    [begin
         Block = iolist_to_binary([["MESSAGE lf_flood_", integer_to_list(B * PerBatch + I),
                                    " 1\r\nx\r\n"] || I <- lists:seq(1, PerBatch)]),
         ok = gen_tcp:send(Sock, ["set publish 0 0 ", integer_to_list(byte_size(Block)),
                                  "\r\n", Block, "\r\n"]),
         {ok, <<"STORED\r\n">>} = gen_tcp:recv(Sock, 8, 10000),
         Next = T0 + (B + 1) * 100,
         timer:sleep(max(0, Next - erlang:monotonic_time(millisecond)))
     end || B <- lists:seq(0, Batches - 1)],
    ok = gen_tcp:close(Sock),
    Sampler ! {stop, Self},
    MaxQueue = receive {max_queue, M} -> M after 10000 -> error(no_sample) end,
    %% The consumer is fast again: what waits drains, the summary arrives.
    ok = logger:update_handler_config(?HANDLER, config, #{pid => Self, sleep => 0}),
    wait_drained(Engine, 60000),
    Total = Batches * PerBatch,
    {Logged, ErlangDropped, EngineNotes} = collect(0, 0, 0),
    EngineDropped = proplists:get_value(<<"log_events_dropped">>, kraken_engine:call(stats)),
    ?debugFmt("~b warnings: ~b logged, ~b dropped by the engine's rate limit, ~b by "
              "kraken_engine's mailbox bound; mailbox at most ~b messages; ~b notes of "
              "the engine about its drops logged",
              [Total, Logged, EngineDropped, ErlangDropped, MaxQueue, EngineNotes]),
    %% Bounded: the mailbox never went far past its bound.
    ?assert(MaxQueue =< ?QUEUE_MAX + 1000),
    ?assert(ErlangDropped > 0),
    ?assert(EngineDropped > 0),
    %% Every warning is logged or counted; the engine's own notes about its
    %% drops (at most one a second) may be among those kraken_engine dropped.
    Accounted = Logged + ErlangDropped + EngineDropped,
    ?assert(Accounted >= Total),
    ?assert(Accounted =< Total + 30),  % (at most one note a second)
    ?assert(EngineNotes > 0).

%% The largest mailbox seen, sampled every 20 ms.
sample(Engine, Max, _) ->
    {message_queue_len, N} = process_info(Engine, message_queue_len),
    receive
        {stop, Pid} -> Pid ! {max_queue, max(N, Max)}
    after 20 ->
            sample(Engine, max(N, Max), self())
    end.

wait_drained(Engine, Left) when Left > 0 ->
    case process_info(Engine, message_queue_len) of
        {message_queue_len, 0} ->
            timer:sleep(1500),  % the engine's next drop report is at most 1 s away
            case process_info(Engine, message_queue_len) of
                {message_queue_len, 0} -> ok;
                _ -> wait_drained(Engine, Left - 1500)
            end;
        _ ->
            timer:sleep(100),
            wait_drained(Engine, Left - 100)
    end;
wait_drained(_, _) ->
    error(mailbox_not_drained).

%% {flood warnings logged, drops counted by kraken_engine, engine drop notes}
collect(Logged, Dropped, Notes) ->
    receive
        {flood_log, Text} ->
            case {binary:match(Text, <<"lf_flood_">>),
                  re:run(Text, "^([0-9]+) kraken engine log events dropped",
                         [{capture, all_but_first, list}]),
                  binary:match(Text, <<"log events dropped">>)} of
                {{_, _}, _, _} -> collect(Logged + 1, Dropped, Notes);
                {nomatch, {match, [N]}, _} -> collect(Logged, Dropped + list_to_integer(N), Notes);
                {nomatch, nomatch, {_, _}} -> collect(Logged, Dropped, Notes + 1);
                _ -> collect(Logged, Dropped, Notes)
            end
    after 500 ->
            {Logged, Dropped, Notes}
    end.

log(#{msg := Msg, meta := Meta}, #{config := #{pid := Pid, sleep := Sleep}}) ->
    Text = iolist_to_binary(case Msg of
                                {string, S} -> S;
                                {report, R} -> io_lib:format("~0p", [R]);
                                {Format, Args} -> io_lib:format(Format, Args)
                            end),
    case maps:get(kraken, Meta, undefined) =:= engine orelse
        binary:match(Text, <<"log events dropped">>) =/= nomatch of
        true ->
            Pid ! {flood_log, Text},
            Sleep > 0 andalso timer:sleep(Sleep);
        false ->
            ok
    end,
    ok.
