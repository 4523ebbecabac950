%% @doc EUnit tests of kraken_client's serialisation and parsing, including
%% the reading of replies from a scripted in-process TCP peer.
-module(kraken_client_tests).

-include_lib("eunit/include/eunit.hrl").

block(Entries) ->
    {ok, Block} = kraken_client:serialize_entries(Entries),
    iolist_to_binary(Block).

serialize_test_() ->
    [?_assertEqual(<<"MESSAGE t1 2\r\nhi\r\n">>, block([{[<<"t1">>], <<"hi">>}])),
     ?_assertEqual(<<"MESSAGE t1 2\r\nhi\r\n">>, block([{"t1", "hi"}])),
     ?_assertEqual(<<"MESSAGE t1 2\r\nhi\r\n">>, block([{<<"t1">>, [$h, <<"i">>]}])),
     ?_assertEqual(<<"MESSAGE a b 0\r\n\r\nMESSAGE c 4\r\n\r\n\r\n\r\n">>,
                   block([{["a", <<"b">>], <<>>}, {[<<"c">>], <<"\r\n\r\n">>}])),
     ?_assertEqual(<<>>, block([])),
     ?_assertEqual({error, {bad_topic, <<"a b">>}},
                   kraken_client:serialize_entries([{[<<"a b">>], <<"x">>}])),
     ?_assertEqual({error, {bad_topic, <<"a\r\n">>}},
                   kraken_client:serialize_entries([{[<<"a\r\n">>], <<"x">>}])),
     ?_assertEqual({error, {bad_topic, <<>>}},
                   kraken_client:serialize_entries([{[<<>>], <<"x">>}]))].

parse_test_() ->
    [?_assertEqual({ok, []}, kraken_client:parse_messages(<<>>)),
     ?_assertEqual({ok, [{[<<"t1">>], <<"hi">>}]},
                   kraken_client:parse_messages(<<"MESSAGE t1 2\r\nhi\r\n">>)),
     ?_assertEqual({ok, [{[<<"a">>, <<"b\0">>], <<"x\r\ny">>}, {[<<"c">>], <<>>}]},
                   kraken_client:parse_messages(
                     <<"MESSAGE a b\0 4\r\nx\r\ny\r\nMESSAGE c 0\r\n\r\n">>)),
     ?_assertMatch({error, _}, kraken_client:parse_messages(<<"MESSAGE t1 3\r\nhi\r\n">>)),
     ?_assertMatch({error, _}, kraken_client:parse_messages(<<"MESSAGE 3\r\nhi\r\n">>)),
     ?_assertMatch({error, _}, kraken_client:parse_messages(<<"MESSAGE t x\r\nhi\r\n">>)),
     ?_assertMatch({error, _}, kraken_client:parse_messages(<<"VALUE t1 2\r\nhi\r\n">>))].

round_trip_test() ->
    Entries = [{[<<"t", N>>, <<"u\0">>], <<"payload ", N, "\r\n\0">>} || N <- lists:seq(0, 255), not lists:member(N, " \r\n")],
    ?assertEqual({ok, Entries}, kraken_client:parse_messages(block(Entries))).

parse_reply_test_() ->
    [?_assertEqual(ok, kraken_client:parse_reply(<<"STORED">>)),
     ?_assertEqual({error, not_found}, kraken_client:parse_reply(<<"NOT_FOUND">>)),
     ?_assertEqual({error, unknown_command}, kraken_client:parse_reply(<<"ERROR">>)),
     ?_assertEqual({error, {client_error, <<"bad">>}},
                   kraken_client:parse_reply(<<"CLIENT_ERROR bad">>)),
     ?_assertEqual({error, {server_error, <<"Too many clients">>}},
                   kraken_client:parse_reply(<<"SERVER_ERROR Too many clients">>)),
     ?_assertEqual({error, {unexpected_reply, <<"what">>}},
                   kraken_client:parse_reply(<<"what">>))].

%% A peer that checks each request and answers with a scripted reply, the
%% reply sent in small pieces to exercise the client's framing.
scripted(Script, Client) ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    Self = self(),
    Peer = spawn_link(fun() ->
                              {ok, S} = gen_tcp:accept(L),
                              serve(S, Script),
                              Self ! {peer_done, self()}
                      end),
    {ok, Sock} = kraken_client:connect({127, 0, 0, 1}, Port),
    Result = Client(Sock),
    receive {peer_done, Peer} -> ok after 5000 -> error(peer_timeout) end,
    kraken_client:disconnect(Sock),
    gen_tcp:close(L),
    Result.

serve(S, []) ->
    gen_tcp:close(S);
serve(S, [{Request, Reply} | Rest]) ->
    {ok, Request} = gen_tcp:recv(S, byte_size(Request), 5000),
    [begin ok = gen_tcp:send(S, Piece), timer:sleep(1) end || Piece <- pieces(Reply, 7)],
    serve(S, Rest).

pieces(Bin, N) when byte_size(Bin) =< N -> [Bin];
pieces(Bin, N) -> <<P:N/binary, Rest/binary>> = Bin, [P | pieces(Rest, N)].

%% A `VALUE messages' reply: <n> is the block's length minus 2.
value(Block) ->
    iolist_to_binary(["VALUE messages 0 ", integer_to_list(byte_size(Block) - 2), "\r\n",
                      Block, "END\r\n"]).

wire_test_() ->
    Get = <<"get messages\r\n">>,
    [?_assertEqual([{[<<"t1">>], <<"hi">>}],
                   scripted([{Get, <<"VALUE messages 0 16\r\nMESSAGE t1 2\r\nhi\r\nEND\r\n">>}],
                            fun kraken_client:receive_messages/1)),
     ?_assertEqual({[], [{[<<"a">>, <<"b">>], <<"x\r\nEND\r\n">>}], ok},
                   scripted([{Get, <<"END\r\n">>},
                             {Get, value(block([{["a", "b"], <<"x\r\nEND\r\n">>}]))},
                             {<<"set subscribe 0 0 1\r\nz\r\n">>, <<"STORED\r\n">>}],
                            fun(S) ->
                                    {kraken_client:receive_messages(S),
                                     kraken_client:receive_messages(S),
                                     kraken_client:subscribe(S, [<<"z">>])}
                            end)),
     ?_assertEqual({error, not_found},
                   scripted([{<<"set retro_subscribe 0 0 7\r\n12\r\na b\r\n">>,
                              <<"NOT_FOUND\r\n">>}],
                            fun(S) -> kraken_client:retro_subscribe(S, 12, ["a", "b"]) end)),
     ?_assertEqual({ok, [{<<"uptime">>, <<"5">>}, {<<"curr_connections">>, <<"1">>}]},
                   scripted([{<<"stats\r\n">>,
                              <<"STAT uptime 5\r\nSTAT curr_connections 1\r\nEND\r\n">>}],
                            fun kraken_client:stats/1)),
     ?_assertEqual(ok,
                   scripted([{<<"quit\r\n">>, <<>>}], fun kraken_client:quit/1)),
     ?_assertEqual({error, closed},
                   scripted([], fun(S) -> kraken_client:register(S) end))].
