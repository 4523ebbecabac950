%% @doc Black-box tests of the whole server: the real application (and so
%% the real C engine) is started in the test node on a free loopback port and
%% driven through kraken_client and raw gen_tcp sockets, row by row of
%% SPEC section 1, plus the admin requests and engine restart.
%%
%% Set KRAKEN_ENGINE to run the suite against another engine executable
%% (e.g. the AddressSanitizer build priv/kraken_engine_asan).
-module(kraken_blackbox_tests).

-include_lib("eunit/include/eunit.hrl").

%% logger handler callback, used to capture the engine's log events.
-export([log/2]).

-define(WAIT, 3000).

%%% Fixtures

%% Default limits (port 0 on 127.0.0.1).
main_test_() ->
    fixture([],
            [{"README example", fun readme_example/0},
             {"register then subscribe", fun register_subscribe/0},
             {"a second register replaces the first", fun register_twice/0},
             {"retro_subscribe", {timeout, 20, fun retro_subscribe/0}},
             {"retro_subscribe before the server started", fun retro_too_old_start/0},
             {"unsubscribe", fun unsubscribe/0},
             {"publish several and multi-topic entries", fun publish_entries/0},
             {"empty publish", fun empty_publish/0},
             {"no self-delivery", fun no_self_delivery/0},
             {"order per publisher", fun ordering/0},
             {"get messages byte format", fun get_messages_bytes/0},
             {"quit", fun quit/0},
             {"version", fun version/0},
             {"stats", fun stats/0},
             {"noreply", fun noreply/0},
             {"pipelined requests", fun pipelining/0},
             {"bare LF line endings", fun bare_lf/0},
             {"payloads and topics with CRLF and NUL", fun binary_payloads/0},
             {"requests split byte by byte", {timeout, 20, fun byte_by_byte/0}},
             {"fan-out to 100 clients", {timeout, 20, fun fanout/0}},
             {"errors close only the offending connection", {timeout, 30, fun errors/0}},
             {"admin requests", fun admin/0},
             {"set_log_level", fun set_log_level/0},
             {"engine restart after kill -9", {timeout, 20, fun engine_restart/0}},
             {"push mode: exact bytes", fun push_bytes/0},
             {"push mode through kraken_client", {timeout, 20, fun push_client/0}},
             {"push mode: a bad mode is refused", fun push_bad_mode/0}]).

%% Small limits: 3 clients, 1 KiB requests and queues, 1 s idle timeout.
limits_test_() ->
    fixture([{max_tcp_clients, 3}, {max_request_bytes, 1024},
             {max_client_queue_bytes, 1024}, {client_idle_timeout_secs, 1}],
            [{"max_tcp_clients", {timeout, 20, fun max_clients/0}},
             {"request too large", {timeout, 20, fun too_large/0}},
             {"command line too long", {timeout, 20, fun too_long_line/0}},
             {"queue bound", {timeout, 20, fun queue_bound/0}},
             {"idle timeout", {timeout, 20, fun idle_timeout/0}},
             {"push mode: a consumer that never reads is disconnected",
              {timeout, 20, fun push_slow_consumer/0}},
             {"push mode: no idle timeout", {timeout, 20, fun push_not_idle/0}}]).

%% Small retention: one shard keeping 3 entries.
retention_test_() ->
    fixture([{num_router_shards, 1}, {messages_stored_per_router_shard, 3}],
            [{"register horizon too old", fun register_too_old/0},
             {"register horizon within retention", fun register_within/0},
             {"retro_subscribe beyond retention", {timeout, 20, fun retro_dropped/0}}]).

%% Start failures are reported with a one-line reason.
start_failure_test_() ->
    {setup, fun() -> application:stop(kraken) end, fun(_) -> ok end,
     [{"port in use", fun port_in_use/0},
      {"bad option", fun bad_option/0}]}.

fixture(Env, Tests) ->
    {setup, fun() -> start(Env) end, fun stop/1, Tests}.

start(Env) ->
    _ = application:stop(kraken),
    _ = application:load(kraken),
    Engine = case os:getenv("KRAKEN_ENGINE") of
                 false -> undefined;
                 "" -> undefined;
                 Path -> Path
             end,
    set_env(kraken_config:defaults() ++
                [{listen_ip, "127.0.0.1"}, {tcp_server_port, 0}, {log_level, warn},
                 {engine_executable, Engine}] ++ Env),
    ok = kraken:start().

set_env(Env) ->
    [ok = application:set_env(kraken, K, V) || {K, V} <- Env],
    ok.

stop(_) ->
    ok = application:stop(kraken).

%%% Helpers

port() ->
    kraken_engine:port().

client() ->
    {ok, S} = kraken_client:connect({127, 0, 0, 1}, port()),
    S.

raw() ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, port(),
                              [binary, {active, false}, {nodelay, true}]),
    S.

%% Polls until N messages arrived (or ?WAIT ms passed); returns them all.
collect(S, N) ->
    collect(S, N, [], erlang:monotonic_time(millisecond) + ?WAIT).

collect(S, N, Acc, Deadline) ->
    Got = kraken_client:receive_messages(S),
    ?assert(is_list(Got)),
    All = Acc ++ Got,
    case length(All) >= N orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> All;
        false -> timer:sleep(10), collect(S, N, All, Deadline)
    end.

%% Asserts that nothing (more) is delivered.
nothing(S) ->
    timer:sleep(50),
    ?assertEqual([], kraken_client:receive_messages(S)).

%% Reads exactly the bytes expected.
expect(S, Expected) ->
    ?assertEqual({ok, Expected}, gen_tcp:recv(S, byte_size(Expected), ?WAIT)).

%% Reads one line.
line(S) ->
    ok = inet:setopts(S, [{packet, line}]),
    R = gen_tcp:recv(S, 0, ?WAIT),
    ok = inet:setopts(S, [{packet, raw}]),
    R.

%% Asserts the peer closed the connection (having sent nothing more).
closed(S) ->
    case gen_tcp:recv(S, 0, ?WAIT) of
        {error, closed} -> ok;
        {error, econnreset} -> ok;
        Other -> ?assertEqual({error, closed}, Other)
    end,
    gen_tcp:close(S).

%% Waits until the engine has no client connected.
no_clients() ->
    wait_until(fun() -> kraken_engine:call(dump_queues) =:= [] end).

wait_until(F) ->
    wait_until(F, erlang:monotonic_time(millisecond) + ?WAIT).

wait_until(F, Deadline) ->
    case F() of
        true -> ok;
        false ->
            ?assert(erlang:monotonic_time(millisecond) < Deadline),
            timer:sleep(10),
            wait_until(F, Deadline)
    end.

%% Waits until the OS clock (the engine's) is 50 ms into a new second, so
%% that what is sent next is stamped with that second; returns it.
next_second() ->
    S = os:system_time(second),
    wait_second(S).

wait_second(S) ->
    Ms = os:system_time(millisecond),
    case Ms div 1000 of
        New when New > S, Ms rem 1000 >= 50 -> New;
        _ -> timer:sleep(5), wait_second(S)
    end.

set_block(Command, Block) ->
    [<<"set ">>, Command, <<" 0 0 ">>, integer_to_binary(iolist_size(Block)), <<"\r\n">>,
     Block, <<"\r\n">>].

%% A client that checks it is still served.
works(S) ->
    ?assertMatch({ok, _}, kraken_client:version(S)).

%% Closes a test's clients when it is done with them, so that the next test's
%% no_clients() need not wait for the idle timeout (1 s in the limits
%% fixture) to reap them.
disconnect(Clients) ->
    [ok = kraken_client:disconnect(C) || C <- Clients],
    ok.

%%% Main fixture

readme_example() ->
    K1 = client(),
    K2 = client(),
    ok = kraken_client:subscribe(K1, [<<"topicA">>, <<"topicB">>]),
    ok = kraken_client:publish(K2, [{[<<"topicA">>], <<"hi there!">>}]),
    ?assertEqual([{[<<"topicA">>], <<"hi there!">>}], collect(K1, 1)),
    ok = kraken_client:unsubscribe(K2, [<<"topicA">>]),
    ok = kraken_client:disconnect(K1),
    ok = kraken_client:disconnect(K2).

register_subscribe() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:publish(Pub, [{[<<"rs_t">>], <<"before">>}]),
    ok = kraken_client:register(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rs_t">>], <<"m1">>}, {[<<"rs_u">>], <<"m2">>}]),
    ok = kraken_client:subscribe(Sub, [<<"rs_t">>]),
    ?assertEqual([{[<<"rs_t">>], <<"m1">>}], collect(Sub, 1)),
    nothing(Sub),
    %% The first subscribe used the horizon: no backlog for rs_u.
    ok = kraken_client:subscribe(Sub, [<<"rs_u">>]),
    nothing(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rs_u">>], <<"m3">>}]),
    ?assertEqual([{[<<"rs_u">>], <<"m3">>}], collect(Sub, 1)),
    %% Subscribing without register delivers no backlog.
    Plain = client(),
    ok = kraken_client:subscribe(Plain, "rs_t"),
    nothing(Plain).

register_twice() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:register(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rt_t">>], <<"a1">>}]),
    ok = kraken_client:register(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rt_t">>], <<"a2">>}]),
    ok = kraken_client:subscribe(Sub, [<<"rt_t">>]),
    ?assertEqual([{[<<"rt_t">>], <<"a2">>}], collect(Sub, 1)),
    nothing(Sub).

retro_subscribe() ->
    Pub = client(),
    %% Entries published during second H are not "strictly after" H.
    H = next_second(),
    ok = kraken_client:publish(Pub, [{[<<"rx_a">>], <<"at H">>}]),
    next_second(),
    ok = kraken_client:publish(Pub, [{[<<"rx_a">>], <<"after 1">>},
                                     {[<<"rx_b">>, <<"rx_a">>], <<"after 2">>},
                                     {[<<"rx_c">>], <<"other topic">>},
                                     {[<<"rx_b">>], <<"after 3">>}]),
    Sub = client(),
    ok = kraken_client:retro_subscribe(Sub, H, [<<"rx_a">>, <<"rx_b">>]),
    %% In publish order, each entry once.
    ?assertEqual([{[<<"rx_a">>], <<"after 1">>},
                  {[<<"rx_b">>, <<"rx_a">>], <<"after 2">>},
                  {[<<"rx_b">>], <<"after 3">>}], collect(Sub, 3)),
    nothing(Sub),
    %% It is also a live subscription.
    ok = kraken_client:publish(Pub, [{[<<"rx_b">>], <<"live">>}]),
    ?assertEqual([{[<<"rx_b">>], <<"live">>}], collect(Sub, 1)),
    %% A horizon in the future delivers nothing old.
    Sub2 = client(),
    ok = kraken_client:retro_subscribe(Sub2, os:system_time(second) + 100, "rx_a"),
    nothing(Sub2).

retro_too_old_start() ->
    Sub = client(),
    Pub = client(),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(Sub, 1, [<<"ro_t">>])),
    %% The subscription is made all the same.
    ok = kraken_client:publish(Pub, [{[<<"ro_t">>], <<"x">>}]),
    ?assertEqual([{[<<"ro_t">>], <<"x">>}], collect(Sub, 1)).

unsubscribe() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:subscribe(Sub, [<<"un_a">>, <<"un_b">>]),
    ok = kraken_client:unsubscribe(Sub, [<<"un_a">>, <<"un_never">>]),
    ok = kraken_client:publish(Pub, [{[<<"un_a">>], <<"1">>}, {[<<"un_b">>], <<"2">>},
                                     {[<<"un_a">>, <<"un_b">>], <<"3">>}]),
    ?assertEqual([{[<<"un_b">>], <<"2">>}, {[<<"un_b">>], <<"3">>}], collect(Sub, 2)),
    nothing(Sub),
    ok = kraken_client:unsubscribe(Sub, [<<"un_b">>]),
    ok = kraken_client:publish(Pub, [{[<<"un_b">>], <<"4">>}]),
    nothing(Sub).

publish_entries() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:subscribe(Sub, [<<"pe_1">>, <<"pe_2">>]),
    ok = kraken_client:publish(Pub, [{[<<"pe_1">>], <<"m1">>},
                                     {[<<"pe_2">>, <<"pe_1">>], <<"m2">>},
                                     {[<<"pe_9">>], <<"m3">>},
                                     {[<<"pe_3">>, <<"pe_9">>, <<"pe_2">>], <<"m4">>},
                                     {[<<"pe_1">>, <<"pe_3">>, <<"pe_2">>], <<"m5">>}]),
    ?assertEqual([{[<<"pe_1">>], <<"m1">>},
                  {[<<"pe_2">>, <<"pe_1">>], <<"m2">>},
                  {[<<"pe_2">>], <<"m4">>},
                  {[<<"pe_1">>, <<"pe_2">>], <<"m5">>}], collect(Sub, 4)),
    nothing(Sub).

empty_publish() ->
    S = raw(),
    ok = gen_tcp:send(S, <<"set publish 0 0 0\r\n\r\n">>),
    expect(S, <<"STORED\r\n">>),
    ?assertEqual(ok, kraken_client:publish(client(), [])).

no_self_delivery() ->
    Both = client(),
    Other = client(),
    ok = kraken_client:subscribe(Both, [<<"ns_t">>]),
    ok = kraken_client:subscribe(Other, [<<"ns_t">>]),
    ok = kraken_client:publish(Both, [{[<<"ns_t">>], <<"mine">>}]),
    ?assertEqual([{[<<"ns_t">>], <<"mine">>}], collect(Other, 1)),
    nothing(Both).

ordering() ->
    Sub = client(),
    P1 = client(),
    P2 = client(),
    ok = kraken_client:subscribe(Sub, [<<"or_a">>, <<"or_b">>]),
    [begin
         ok = kraken_client:publish(P1, [{[<<"or_a">>], integer_to_binary(N)}]),
         ok = kraken_client:publish(P2, [{[<<"or_b">>], integer_to_binary(N)}])
     end || N <- lists:seq(1, 50)],
    ok = kraken_client:publish(P1, [{[<<"or_a">>, <<"or_b">>], integer_to_binary(N)}
                                    || N <- lists:seq(51, 100)]),
    All = collect(Sub, 150),
    ?assertEqual(150, length(All)),
    FromP1 = [binary_to_integer(M) || {T, M} <- All, hd(T) =:= <<"or_a">>],
    FromP2 = [binary_to_integer(M) || {[<<"or_b">>], M} <- All],
    ?assertEqual(lists:seq(1, 100), FromP1),
    ?assertEqual(lists:seq(1, 50), FromP2).

get_messages_bytes() ->
    S = raw(),
    Pub = client(),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    expect(S, <<"END\r\n">>),
    ok = gen_tcp:send(S, set_block(<<"subscribe">>, <<"t1">>)),
    expect(S, <<"STORED\r\n">>),
    ok = kraken_client:publish(Pub, [{[<<"t1">>], <<"hi">>}]),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    expect(S, <<"VALUE messages 0 16\r\nMESSAGE t1 2\r\nhi\r\nEND\r\n">>),
    ok = kraken_client:publish(Pub, [{[<<"t1">>], <<"a">>}, {[<<"t1">>], <<>>}]),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    Block = <<"MESSAGE t1 1\r\na\r\nMESSAGE t1 0\r\n\r\n">>,
    expect(S, iolist_to_binary(["VALUE messages 0 ", integer_to_list(byte_size(Block) - 2),
                                "\r\n", Block, "END\r\n"])),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    expect(S, <<"END\r\n">>).

quit() ->
    C = client(),
    ok = kraken_client:subscribe(C, [<<"q_t">>]),
    ?assertEqual(ok, kraken_client:quit(C)),
    R = raw(),
    ok = gen_tcp:send(R, <<"quit\r\n">>),
    closed(R).

version() ->
    S = raw(),
    ok = gen_tcp:send(S, <<"version\r\n">>),
    {ok, Line} = line(S),
    ?assertMatch(<<"VERSION ", _/binary>>, Line),
    ?assertEqual(<<"\r\n">>, binary:part(Line, byte_size(Line), -2)),
    ?assertMatch({ok, <<_, _/binary>>}, kraken_client:version(client())).

stats() ->
    {ok, Stats} = kraken_client:stats(client()),
    Names = [Name || {Name, _} <- Stats],
    [?assertNotEqual([], [N || N <- Names, binary:match(N, Part) =/= nomatch])
     || Part <- [<<"connections">>, <<"topics">>, <<"subscriptions">>, <<"published">>,
                 <<"delivered">>, <<"bytes">>, <<"uptime">>]],
    [?assertMatch({_, nomatch}, {V, re:run(V, "\\s")}) || {_, V} <- Stats],
    ?assert(is_list(kraken_engine:call(stats))).

noreply() ->
    S = raw(),
    Pub = raw(),
    ok = gen_tcp:send(S, [<<"set register 0 0 0 noreply\r\n\r\n">>,
                          <<"set subscribe 0 0 9 noreply\r\nnr_a nr_b\r\n">>,
                          <<"set unsubscribe 0 0 4 noreply\r\nnr_b\r\n">>,
                          <<"version\r\n">>]),
    {ok, <<"VERSION ", _/binary>>} = line(S),
    Block = <<"MESSAGE nr_a 1\r\nx\r\nMESSAGE nr_b 1\r\ny\r\n">>,
    ok = gen_tcp:send(Pub, [<<"set publish 0 0 ">>, integer_to_binary(byte_size(Block)),
                            <<" noreply\r\n">>, Block, <<"\r\nversion\r\n">>]),
    {ok, <<"VERSION ", _/binary>>} = line(Pub),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    expect(S, <<"VALUE messages 0 17\r\nMESSAGE nr_a 1\r\nx\r\nEND\r\n">>).

pipelining() ->
    S = raw(),
    ok = gen_tcp:send(S, [set_block(<<"subscribe">>, <<"pl_a">>), <<"version\r\n">>,
                          <<"get messages\r\n">>, set_block(<<"unsubscribe">>, <<"pl_a">>),
                          <<"get messages\r\n">>]),
    expect(S, <<"STORED\r\n">>),
    {ok, <<"VERSION ", _/binary>>} = line(S),
    expect(S, <<"END\r\nSTORED\r\nEND\r\n">>).

bare_lf() ->
    S = raw(),
    ok = gen_tcp:send(S, <<"version\n">>),
    {ok, <<"VERSION ", _/binary>>} = line(S),
    ok = gen_tcp:send(S, <<"set subscribe 0 0 4\nlf_a\r\nget messages\n">>),
    expect(S, <<"STORED\r\nEND\r\n">>).

binary_payloads() ->
    Sub = client(),
    Pub = client(),
    Topic = <<"bp_\0nul", 255, 1>>,
    ok = kraken_client:subscribe(Sub, [Topic, <<"bp_b">>]),
    Payloads = [<<"a\r\nb">>, <<"\r\n">>, <<0, 0, 0>>, <<>>, <<"END\r\n">>,
                <<"MESSAGE bp_b 3\r\n">>, <<"\r\nVALUE messages 0 1\r\n">>,
                list_to_binary(lists:seq(0, 255)),
                binary:copy(<<"0123456789\r\n\0">>, 80000)],
    ok = kraken_client:publish(Pub, [{[Topic], P} || P <- Payloads]),
    ok = kraken_client:publish(Pub, [{[<<"bp_b">>, Topic], <<"both">>}]),
    ?assertEqual([{[Topic], P} || P <- Payloads] ++ [{[<<"bp_b">>, Topic], <<"both">>}],
                 collect(Sub, length(Payloads) + 1)),
    %% Topic with NUL is length-counted: a prefix is another topic.
    ok = kraken_client:publish(Pub, [{[<<"bp_">>], <<"prefix">>}]),
    nothing(Sub).

byte_by_byte() ->
    S = raw(),
    Pub = raw(),
    Slow = fun(Sock, Data) ->
                   [begin ok = gen_tcp:send(Sock, [B]), timer:sleep(1) end
                    || <<B>> <= iolist_to_binary(Data)],
                   ok
           end,
    Slow(S, [set_block(<<"register">>, <<>>), set_block(<<"subscribe">>, <<"bb_t bb_u">>)]),
    expect(S, <<"STORED\r\nSTORED\r\n">>),
    Slow(Pub, set_block(<<"publish">>, <<"MESSAGE bb_u bb_t 5\r\nab\r\nc\r\n">>)),
    expect(Pub, <<"STORED\r\n">>),
    Slow(S, <<"get messages\r\n">>),
    expect(S, <<"VALUE messages 0 26\r\nMESSAGE bb_u bb_t 5\r\nab\r\nc\r\nEND\r\n">>),
    Slow(S, <<"version\r\n">>),
    {ok, <<"VERSION ", _/binary>>} = line(S).

fanout() ->
    Subs = [client() || _ <- lists:seq(1, 100)],
    [ok = kraken_client:subscribe(S, [<<"fan">>]) || S <- Subs],
    Pub = client(),
    ok = kraken_client:publish(Pub, [{[<<"fan">>], <<"to all">>}]),
    [?assertEqual([{[<<"fan">>], <<"to all">>}], collect(S, 1)) || S <- Subs],
    [ok = kraken_client:disconnect(S) || S <- Subs].

%% Each bad input gets its reply, then only that connection is closed.
errors() ->
    Bystander = client(),
    Pub = client(),
    ok = kraken_client:subscribe(Bystander, [<<"err_t">>]),
    Cases =
        [{<<"bogus\r\n">>, <<"ERROR\r\n">>},
         {<<"get foo\r\n">>, <<"ERROR\r\n">>},
         {<<"get messages extra\r\n">>, error_reply},
         {<<"set subscribe 0 0 abc\r\nx\r\n">>, client_error},
         {<<"set subscribe 0 0\r\n">>, client_error},
         {<<"set subscribe\r\n">>, client_error},
         {<<"set subscribe x 0 1\r\na\r\n">>, client_error},
         {<<"set subscribe 0 0 -1\r\n">>, client_error},
         {<<"set subscribe 0 0 2\r\nabXY">>, client_error},
         {<<"set publish 0 0 5\r\nhello\r\n">>, client_error},
         {set_block(<<"publish">>, <<"MESSAGE err_t\r\nx\r\n">>), client_error},
         {set_block(<<"publish">>, <<"MESSAGE err_t x\r\nx\r\n">>), client_error},
         {set_block(<<"publish">>, <<"MESSAGE err_t 5\r\nx\r\n">>), client_error},
         {set_block(<<"publish">>, <<"MESSAGE err_t 1\r\nxY">>), client_error},
         {set_block(<<"publish">>, <<"MESSAGE err_t 1\r\nx\r\nJUNK">>), client_error},
         {set_block(<<"retro_subscribe">>, <<"abc\r\nerr_t">>), client_error},
         {set_block(<<"retro_subscribe">>, <<"12x\r\nerr_t">>), client_error},
         {set_block(<<"retro_subscribe">>, <<"err_t">>), client_error}],
    [begin
         S = raw(),
         ok = gen_tcp:send(S, Request),
         case Expected of
             client_error ->
                 {ok, Line} = line(S),
                 ?assertMatch({_, <<"CLIENT_ERROR ", _/binary>>}, {Request, Line}),
                 ?assertEqual(<<"\r\n">>, binary:part(Line, byte_size(Line), -2));
             error_reply ->
                 {ok, Line} = line(S),
                 ?assertMatch({_, <<_/binary>>}, {Request, Line}),
                 ?assert(lists:member(hd(binary:split(Line, <<" ">>)),
                                      [<<"ERROR\r\n">>, <<"CLIENT_ERROR">>]));
             Reply ->
                 ?assertEqual({Request, {ok, Reply}},
                              {Request, gen_tcp:recv(S, byte_size(Reply), ?WAIT)})
         end,
         closed(S),
         %% Nothing else is disturbed.
         ok = kraken_client:publish(Pub, [{[<<"err_t">>], Request}]),
         ?assertEqual([{[<<"err_t">>], iolist_to_binary(Request)}], collect(Bystander, 1))
     end || {Request, Expected} <- Cases],
    works(Pub).

admin() ->
    C = client(),
    ok = kraken_client:subscribe(C, [<<"adm_a">>, <<"adm_b">>]),
    Other = client(),
    ok = kraken_client:subscribe(Other, [<<"adm_a">>]),
    [] = kraken_client:receive_messages(Other),
    Queues = kraken_engine:call(dump_queues),
    {ok, {_, Port}} = inet:sockname(C),
    Peer = iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]),
    [{Id, Peer, 2, 0, 0, Connected, -1}] = [Q || Q = {_, P, _, _, _, _, _} <- Queues, P =:= Peer],
    ?assert(Connected >= 0),
    ?assertEqual(lists:sort([<<"adm_a">>, <<"adm_b">>]),
                 lists:sort(kraken_engine:call({dump_queue_topics, Id}))),
    ?assertEqual(not_found, kraken_engine:call({dump_queue_topics, 999999999})),
    Topics = kraken_engine:call(dump_topics),
    [{<<"adm_a">>, ShardA, 2}] = [T || T = {<<"adm_a">>, _, _} <- Topics],
    [{<<"adm_b">>, _, 1}] = [T || T = {<<"adm_b">>, _, _} <- Topics],
    ?assert(is_integer(ShardA)),
    Counts = [N || {_, _, N} <- Topics],
    ?assertEqual(Counts, lists:reverse(lists:sort(Counts))),
    %% The text bin/kraken prints.
    QueuesText = lists:flatten(io_lib:format("~s", [kraken_ctl_engine:dump_queues()])),
    ?assertNotEqual(nomatch, string:find(QueuesText, binary_to_list(Peer))),
    {ok, TopicsText} = kraken_ctl_engine:dump_queue_topics(integer_to_list(Id)),
    ?assertEqual("adm_a\nadm_b\n", lists:flatten(lists:sort(
                                                   [lists:flatten(L) || L <- TopicsText]))),
    ?assertMatch({error, _}, kraken_ctl_engine:dump_queue_topics("999999999")),
    %% An id the engine cannot decode (beyond 64 bits) is not found either.
    {error, NoQueue} = kraken_ctl_engine:dump_queue_topics("99999999999999999999"),
    ?assertEqual("kraken: no client queue with id 99999999999999999999\n", lists:flatten(NoQueue)),
    ?assertMatch({error, _}, kraken_ctl_engine:dump_queue_topics("x")),
    DumpTopics = lists:flatten(io_lib:format("~s", [kraken_ctl_engine:dump_topics()])),
    ?assertNotEqual(nomatch, string:find(DumpTopics, "adm_a")),
    ?assertMatch({ok, _}, kraken_ctl_engine:status()),
    ?assertMatch({running, _}, kraken:status()).

set_log_level() ->
    Id = kraken_test_capture,
    ok = logger:add_handler(Id, ?MODULE, #{config => #{pid => self()}}),
    try
        ok = kraken_engine:set_log_level(debug),
        ?assertEqual(debug, maps:get(level, logger:get_primary_config())),
        %% A connection at debug level should make the engine say something;
        %% any event forwarded from the engine will do.
        works(client()),
        ok = kraken_engine:set_log_level(warning),
        ?assertEqual(warning, maps:get(level, logger:get_primary_config())),
        ?assertEqual({ok, "log level set to warn\n"},
                     flat(kraken_ctl_engine:change_log_level("warn"))),
        ?assertMatch({error, _}, kraken_ctl_engine:change_log_level("loud")),
        ?assertMatch({error, _}, kraken_engine:set_log_level(loud))
    after
        logger:remove_handler(Id)
    end,
    flush_logs().

flat({Tag, Text}) -> {Tag, lists:flatten(io_lib:format("~s", [Text]))}.

flush_logs() ->
    receive {log, _, _, _} -> flush_logs() after 0 -> ok end.

engine_restart() ->
    Old = kraken_engine:os_pid(),
    C = client(),
    works(C),
    ok = logger:add_primary_filter(kraken_test_mute,
                                   {fun(#{meta := #{domain := [otp | _]}}, _) -> stop;
                                       (#{level := error}, _) -> stop;
                                       (_, _) -> ignore
                                    end, []}),
    try
        T0 = erlang:monotonic_time(millisecond),
        _ = os:cmd("kill -9 " ++ integer_to_list(Old)),
        closed(C),
        wait_until(fun() -> (catch kraken_engine:os_pid()) =/= Old andalso
                                is_integer(catch kraken_engine:os_pid()) end),
        {ok, New} = kraken_client:connect({127, 0, 0, 1}, port()),
        works(New),
        Elapsed = erlang:monotonic_time(millisecond) - T0,
        ?assert(Elapsed < 1000)
    after
        logger:remove_primary_filter(kraken_test_mute)
    end.

%%% Limits fixture

max_clients() ->
    no_clients(),
    Cs = [client() || _ <- lists:seq(1, 3)],
    [works(C) || C <- Cs],
    Extra = raw(),
    expect(Extra, <<"SERVER_ERROR Too many clients\r\n">>),
    closed(Extra),
    [works(C) || C <- Cs],
    [C1 | Rest] = Cs,
    ok = kraken_client:disconnect(C1),
    wait_until(fun() -> length(kraken_engine:call(dump_queues)) =:= 2 end),
    C4 = client(),
    works(C4),
    [works(C) || C <- Rest],
    disconnect([C4 | Rest]).

too_large() ->
    no_clients(),
    Bystander = client(),
    %% A request just under the limit is fine.
    Block = iolist_to_binary(["MESSAGE tl_t 900\r\n", binary:copy(<<"x">>, 900), "\r\n"]),
    ok = kraken_client:publish(Bystander, [{[<<"tl_t">>], binary:copy(<<"x">>, 900)}]),
    ?assert(byte_size(Block) < 1024),
    %% Declared data block over the limit.
    S1 = raw(),
    ok = gen_tcp:send(S1, <<"set publish 0 0 2000\r\n">>),
    expect(S1, <<"CLIENT_ERROR request too large\r\n">>),
    closed(S1),
    works(Bystander),
    disconnect([Bystander]).

%% A command line (no newline yet) longer than max_request_bytes.
too_long_line() ->
    no_clients(),
    Bystander = client(),
    S2 = raw(),
    ok = gen_tcp:send(S2, ["get ", binary:copy(<<"y">>, 1500)]),
    expect(S2, <<"CLIENT_ERROR request too large\r\n">>),
    closed(S2),
    works(Bystander),
    disconnect([Bystander]).

queue_bound() ->
    no_clients(),
    Id = kraken_test_capture,
    ok = logger:add_handler(Id, ?MODULE, #{config => #{pid => self()}}),
    try
        Sub = client(),
        Pub = client(),
        ok = kraken_client:subscribe(Sub, [<<"qb_t">>]),
        Payload = binary:copy(<<"q">>, 600),
        [ok = kraken_client:publish(Pub, [{[<<"qb_t">>], Payload}]) || _ <- lists:seq(1, 3)],
        wait_until(fun() -> length(kraken_engine:call(dump_queues)) =:= 1 end),
        ?assertMatch({error, _}, kraken_client:receive_messages(Sub)),
        works(Pub),
        %% The disconnection was logged as a warning from the engine.
        receive
            {log, warning, engine, _} -> ok
        after ?WAIT ->
                ?assert(false)
        end,
        disconnect([Pub])
    after
        logger:remove_handler(Id)
    end,
    flush_logs().

idle_timeout() ->
    no_clients(),
    Self = self(),
    %% A client that polls every 250 ms stays connected meanwhile.
    Poller = spawn_link(fun() ->
                                Busy = client(),
                                [begin
                                     ?assert(is_list(kraken_client:receive_messages(Busy))),
                                     timer:sleep(250)
                                 end || _ <- lists:seq(1, 12)],
                                works(Busy),
                                Self ! {self(), done}
                        end),
    Idle = raw(),
    T0 = erlang:monotonic_time(millisecond),
    closed(Idle),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    ?assert(Elapsed >= 900),
    ?assert(Elapsed =< 2500),
    receive {Poller, done} -> ok after 10000 -> ?assert(false) end.

%% Push mode turns a connection's queue into unprompted `get messages'
%% replies; nothing else on the wire changes.
push_bytes() ->
    S = raw(),
    ok = gen_tcp:send(S, <<"set subscribe 0 0 5\r\npb_t1\r\nset push 0 0 2\r\non\r\n">>),
    {ok, <<"STORED\r\nSTORED\r\n">>} = recv_n(S, 16),
    Pub = client(),
    ok = kraken_client:publish(Pub, [{[<<"pb_t1">>], <<"hi">>}]),
    Expected = <<"VALUE messages 0 19\r\nMESSAGE pb_t1 2\r\nhi\r\nEND\r\n">>,
    ?assertEqual({ok, Expected}, recv_n(S, byte_size(Expected))),
    %% off: back to polling
    ok = gen_tcp:send(S, <<"set push 0 0 3\r\noff\r\n">>),
    {ok, <<"STORED\r\n">>} = recv_n(S, 8),
    ok = kraken_client:publish(Pub, [{[<<"pb_t1">>], <<"yo">>}]),
    ?assertEqual({error, timeout}, gen_tcp:recv(S, 0, 300)),
    ok = gen_tcp:send(S, <<"get messages\r\n">>),
    Polled = <<"VALUE messages 0 19\r\nMESSAGE pb_t1 2\r\nyo\r\nEND\r\n">>,
    ?assertEqual({ok, Polled}, recv_n(S, byte_size(Polled))),
    gen_tcp:close(S),
    works(Pub).

push_client() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:subscribe(Sub, [<<"pc_a">>]),
    ok = kraken_client:push(Sub, on),
    ?assertEqual([], kraken_client:await_messages(Sub, 100)),
    [ok = kraken_client:publish(Pub, [{[<<"pc_a">>], integer_to_binary(I)}])
     || I <- lists:seq(1, 50)],
    %% Requests still work while blocks arrive; blocks ahead of a reply are kept.
    ok = kraken_client:subscribe(Sub, [<<"pc_b">>]),
    ok = kraken_client:publish(Pub, [{[<<"pc_b">>, <<"pc_a">>], <<"both">>}]),
    Got = await(Sub, 51),
    ?assertEqual([{[<<"pc_a">>], integer_to_binary(I)} || I <- lists:seq(1, 50)] ++
                     [{[<<"pc_b">>, <<"pc_a">>], <<"both">>}], Got),
    works(Sub),
    works(Pub).

await(S, N) ->
    await(S, N, [], erlang:monotonic_time(millisecond) + ?WAIT).

await(S, N, Acc, Deadline) ->
    Got = kraken_client:await_messages(S, 200),
    ?assert(is_list(Got)),
    All = Acc ++ Got,
    case length(All) >= N orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> All;
        false -> await(S, N, All, Deadline)
    end.

push_bad_mode() ->
    S = raw(),
    ok = gen_tcp:send(S, <<"set push 0 0 3\r\nyes\r\n">>),
    ?assertEqual({ok, <<"CLIENT_ERROR push mode must be on or off\r\n">>}, recv_all(S)),
    works(client()).

recv_n(S, N) ->
    gen_tcp:recv(S, N, ?WAIT).

%% Everything until the server closes the connection.
recv_all(S) ->
    recv_all(S, <<>>).

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, ?WAIT) of
        {ok, Data} -> recv_all(S, <<Acc/binary, Data/binary>>);
        {error, closed} -> {ok, Acc};
        Error -> Error
    end.

%% A push client that never reads: its unsent output plus its queue go over
%% max_client_queue_bytes (1 KiB here) and it is disconnected, with a warning.
push_slow_consumer() ->
    no_clients(),
    Id = kraken_test_capture,
    ok = logger:add_handler(Id, ?MODULE, #{config => #{pid => self()}}),
    try
        {ok, Slow} = gen_tcp:connect({127, 0, 0, 1}, port(),
                                     [binary, {active, false}, {recbuf, 1024}]),
        ok = gen_tcp:send(Slow, <<"set subscribe 0 0 4\r\npslo\r\nset push 0 0 2\r\non\r\n">>),
        {ok, <<"STORED\r\nSTORED\r\n">>} = recv_n(Slow, 16),
        Pub = client(),
        Payload = binary:copy(<<"p">>, 900),
        %% Enough to fill the socket buffers on both sides, then the bound.
        publish_until_gone(Pub, Payload, 5000),
        receive
            {log, warning, engine, _} -> ok
        after ?WAIT ->
                ?assert(false)
        end,
        works(Pub),
        gen_tcp:close(Slow),
        disconnect([Pub])
    after
        logger:remove_handler(Id)
    end,
    flush_logs().

publish_until_gone(_Pub, _Payload, 0) ->
    ?assert(false);
publish_until_gone(Pub, Payload, N) ->
    ok = kraken_client:publish(Pub, [{[<<"pslo">>], Payload}]),
    case length(kraken_engine:call(dump_queues)) of
        1 -> ok;
        _ -> publish_until_gone(Pub, Payload, N - 1)
    end.

%% A connection in push mode has nothing to ask: it outlives the idle timeout.
push_not_idle() ->
    no_clients(),
    S = client(),
    ok = kraken_client:push(S, on),
    timer:sleep(2500),
    works(S),
    disconnect([S]).

%%% Retention fixture (1 shard, 3 entries kept)

register_too_old() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:register(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rto_t">>], integer_to_binary(N)} || N <- lists:seq(1, 5)]),
    ?assertEqual({error, not_found}, kraken_client:subscribe(Sub, [<<"rto_t">>])),
    _ = collect(Sub, 0),
    ok = kraken_client:publish(Pub, [{[<<"rto_t">>], <<"live">>}]),
    ?assertEqual([{[<<"rto_t">>], <<"live">>}], collect(Sub, 1)).

register_within() ->
    Sub = client(),
    Pub = client(),
    ok = kraken_client:register(Sub),
    ok = kraken_client:publish(Pub, [{[<<"rw_t">>], <<"1">>}, {[<<"rw_u">>], <<"2">>}]),
    ok = kraken_client:subscribe(Sub, [<<"rw_t">>, <<"rw_u">>]),
    ?assertEqual([{[<<"rw_t">>], <<"1">>}, {[<<"rw_u">>], <<"2">>}], collect(Sub, 2)),
    nothing(Sub).

retro_dropped() ->
    Pub = client(),
    next_second(),
    H = next_second(),
    next_second(),
    ok = kraken_client:publish(Pub, [{[<<"rd_t">>], integer_to_binary(N)} || N <- lists:seq(1, 5)]),
    Sub = client(),
    ?assertEqual({error, not_found}, kraken_client:retro_subscribe(Sub, H, [<<"rd_t">>])),
    _ = collect(Sub, 0),
    ok = kraken_client:publish(Pub, [{[<<"rd_t">>], <<"live">>}]),
    ?assertMatch([{[<<"rd_t">>], <<"live">>}], collect(Sub, 1)),
    %% The last 3 entries (all after the new horizon) are retained.
    H2 = next_second(),
    next_second(),
    ok = kraken_client:publish(Pub, [{[<<"rd_t">>], integer_to_binary(N)} || N <- lists:seq(6, 8)]),
    Sub2 = client(),
    ok = kraken_client:retro_subscribe(Sub2, H2, [<<"rd_t">>]),
    ?assertEqual([{[<<"rd_t">>], integer_to_binary(N)} || N <- lists:seq(6, 8)],
                 collect(Sub2, 3)).

%%% Start failures

port_in_use() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    mute_otp_reports(),
    try
        start([{tcp_server_port, Port}]),
        ?assert(false)
    catch
        error:{badmatch, {error, Reason}} ->
            %% Refused before the engine is started, naming both options.
            ?assertEqual("kraken: cannot listen on listen_ip 127.0.0.1 tcp_server_port " ++
                             integer_to_list(Port) ++ ": address already in use",
                         kraken:format_error(Reason))
    end,
    %% The Redis and HTTP ports too, named (it was the engine's "the engine
    %% failed to start: listen 127.0.0.1 port P (redis protocol): ...").
    [try
         start([{Opt, Port}]),
         ?assert(false)
     catch
         error:{badmatch, {error, Reason2}} ->
             ?assertEqual("kraken: cannot listen on listen_ip 127.0.0.1 " ++
                              atom_to_list(Opt) ++ " " ++ integer_to_list(Port) ++
                              ": address already in use",
                          kraken:format_error(Reason2))
     end || Opt <- [redis_port, http_port]],
    gen_tcp:close(L),
    %% Two options on one port: each binds alone, so the check would pass
    %% and the engine fail on the second with its own words.
    [try
         start([{tcp_server_port, Port}, {Opt, Port}]),
         ?assert(false)
     catch
         error:{badmatch, {error, Reason3}} ->
             ?assertEqual("kraken: " ++ atom_to_list(Opt) ++ " and tcp_server_port are both " ++
                              integer_to_list(Port) ++ ": each needs a port of its own",
                          kraken:format_error(Reason3))
     end || Opt <- [redis_port, http_port]],
    unmute(),
    ?assertNot(lists:keymember(kraken, 1, application:which_applications())).

bad_option() ->
    mute_otp_reports(),
    try
        start([{max_tcp_clients, 0}]),
        ?assert(false)
    catch
        error:{badmatch, {error, Reason}} ->
            ?assertEqual("kraken: bad value for option max_tcp_clients: 0 "
                         "(expected an integer 1..4294967295)", kraken:format_error(Reason))
    after
        unmute()
    end,
    set_env(kraken_config:defaults()).

%% Mutes OTP's crash/supervisor reports of an expected failure.
mute_otp_reports() ->
    ok = logger:add_primary_filter(kraken_test_mute,
                                   {fun(#{meta := #{domain := [otp | _]}}, _) -> stop;
                                       (_, _) -> ignore
                                    end, []}).

unmute() ->
    logger:remove_primary_filter(kraken_test_mute).

%%% logger handler callback

%% @doc Sends engine log events to the test process.
log(#{level := Level, meta := Meta, msg := Msg}, #{config := #{pid := Pid}}) ->
    case Meta of
        #{kraken := engine} -> Pid ! {log, Level, engine, Msg};
        _ -> ok
    end.
