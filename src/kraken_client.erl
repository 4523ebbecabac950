%% @doc An Erlang client for Kraken's memcached-shaped text protocol, with
%% the original's API (SPEC section 4) plus `version/1' and `stats/1'.
%%
%% Topics and messages may be given as binaries, strings or iolists and are
%% returned as binaries. The socket is a passive binary gen_tcp socket.
%%
%% Replies map to: `STORED' -> `ok'; `NOT_FOUND' -> `{error, not_found}';
%% `ERROR' -> `{error, unknown_command}'; `CLIENT_ERROR R' ->
%% `{error, {client_error, R}}'; `SERVER_ERROR R' -> `{error, {server_error, R}}';
%% a closed connection -> `{error, closed}'.
%%
%% Push mode (`push(Sock, on)', a Kraken extension, docs/protocol.md): the
%% server then sends each connection's messages as they arrive, as unprompted
%% `VALUE messages' blocks; `await_messages/2' waits for them.  Blocks that
%% arrive ahead of the reply to another request are kept (in the calling
%% process's dictionary, per socket) and returned by the next
%% `await_messages/2'; in push mode, use it instead of `receive_messages/1'.
-module(kraken_client).

-export([connect/2, connect/3, register/1, subscribe/2, retro_subscribe/3,
         unsubscribe/2, publish/2, receive_messages/1, quit/1, disconnect/1,
         version/1, stats/1, push/2, await_messages/2]).
%% Exported for tests.
-export([serialize_entries/1, parse_messages/1, parse_reply/1]).

-type topic() :: iodata().
-type topics() :: topic() | [topic()].
-type error() :: {error, not_found | unknown_command | closed | timeout |
                  {client_error | server_error, binary()} |
                  {unexpected_reply, binary()} | {bad_topic, term()} | term()}.
-export_type([error/0]).

-define(TIMEOUT, 10000).

%%% API

%% @doc Connects to a Kraken server.
-spec connect(inet:socket_address() | inet:hostname(), inet:port_number()) ->
          {ok, gen_tcp:socket()} | {error, term()}.
connect(Host, Port) ->
    connect(Host, Port, ?TIMEOUT).

-spec connect(inet:socket_address() | inet:hostname(), inet:port_number(),
              timeout()) -> {ok, gen_tcp:socket()} | {error, term()}.
connect(Host, Port, Timeout) ->
    gen_tcp:connect(Host, Port, [binary, {packet, line}, {active, false},
                                 {nodelay, true}], Timeout).

%% @doc Closes the connection.
-spec disconnect(gen_tcp:socket()) -> ok.
disconnect(Sock) ->
    gen_tcp:close(Sock).

%% @doc Marks now as this connection's horizon for the next subscribe.
-spec register(gen_tcp:socket()) -> ok | error().
register(Sock) ->
    set(Sock, <<"register">>, <<>>).

%% @doc Subscribes to topics; `{error, not_found}' means the registered
%% horizon was too old (the subscription is made all the same).
-spec subscribe(gen_tcp:socket(), topics()) -> ok | error().
subscribe(Sock, Topics) ->
    topics_command(Sock, <<"subscribe">>, Topics).

%% @doc Subscribes and receives the retained messages published on those
%% topics strictly after Horizon (Unix time in seconds).
-spec retro_subscribe(gen_tcp:socket(), integer(), topics()) -> ok | error().
retro_subscribe(Sock, Horizon, Topics) when is_integer(Horizon) ->
    case join_topics(Topics) of
        {ok, Block} ->
            set(Sock, <<"retro_subscribe">>,
                [integer_to_binary(Horizon), <<"\r\n">>, Block]);
        Error ->
            Error
    end.

%% @doc Unsubscribes from topics.
-spec unsubscribe(gen_tcp:socket(), topics()) -> ok | error().
unsubscribe(Sock, Topics) ->
    topics_command(Sock, <<"unsubscribe">>, Topics).

%% @doc Publishes entries, each a message on one or more topics.
-spec publish(gen_tcp:socket(), [{topics(), iodata()}]) -> ok | error().
publish(Sock, Entries) ->
    case serialize_entries(Entries) of
        {ok, Block} -> set(Sock, <<"publish">>, Block);
        Error -> Error
    end.

%% @doc Returns and removes the messages queued for this connection.
-spec receive_messages(gen_tcp:socket()) -> [{[binary()], binary()}] | error().
receive_messages(Sock) ->
    put({kraken_client_polling, Sock}, true),
    Reply = request(Sock, <<"get messages\r\n">>),
    erase({kraken_client_polling, Sock}),
    case Reply of
        {ok, <<"END">>} ->
            take_pushed(Sock);
        {ok, <<"VALUE messages ", Rest/binary>> = Line} ->
            case binary:split(Rest, <<" ">>, [global]) of
                [_Flags, N] ->
                    receive_value(Sock, binary_to_integer(N));
                _ ->
                    {error, {unexpected_reply, Line}}
            end;
        {ok, Line} ->
            parse_reply(Line);
        Error ->
            Error
    end.

%% @doc Turns push mode on or off for this connection.
-spec push(gen_tcp:socket(), on | off) -> ok | error().
push(Sock, Mode) when Mode =:= on; Mode =:= off ->
    set(Sock, <<"push">>, atom_to_binary(Mode)).

%% @doc In push mode: the messages pushed so far, or, when none has arrived,
%% the next block pushed within Timeout milliseconds (`[]' if none).
-spec await_messages(gen_tcp:socket(), timeout()) -> [{[binary()], binary()}] | error().
await_messages(Sock, Timeout) ->
    case take_pushed(Sock) of
        [] ->
            ok = inet:setopts(Sock, [{packet, line}]),
            case gen_tcp:recv(Sock, 0, Timeout) of
                {ok, Line} ->
                    case value_line(strip_eol(Line)) of
                        {ok, N} -> receive_value(Sock, N);
                        error -> {error, {unexpected_reply, strip_eol(Line)}}
                    end;
                {error, timeout} ->
                    [];
                Error ->
                    Error
            end;
        Messages ->
            Messages
    end.

%% @doc Sends `quit' and waits for the server to close the connection.
-spec quit(gen_tcp:socket()) -> ok | error().
quit(Sock) ->
    case gen_tcp:send(Sock, <<"quit\r\n">>) of
        ok ->
            Result = case gen_tcp:recv(Sock, 0, ?TIMEOUT) of
                         {error, closed} -> ok;
                         {ok, Data} -> {error, {unexpected_reply, Data}};
                         {error, _} = Error -> Error
                     end,
            gen_tcp:close(Sock),
            Result;
        Error ->
            gen_tcp:close(Sock),
            Error
    end.

%% @doc The server's version string (`version' request).
-spec version(gen_tcp:socket()) -> {ok, binary()} | error().
version(Sock) ->
    case request(Sock, <<"version\r\n">>) of
        {ok, <<"VERSION ", Version/binary>>} -> {ok, Version};
        {ok, Line} -> parse_reply(Line);
        Error -> Error
    end.

%% @doc The server's statistics (`stats' request).
-spec stats(gen_tcp:socket()) -> {ok, [{binary(), binary()}]} | error().
stats(Sock) ->
    case request(Sock, <<"stats\r\n">>) of
        {ok, Line} -> stats_lines(Sock, Line, []);
        Error -> Error
    end.

%%% Serialisation and parsing (exported for tests)

%% @doc The data block of a `publish' request.
-spec serialize_entries([{topics(), iodata()}]) -> {ok, iodata()} | error().
serialize_entries(Entries) ->
    try
        {ok, [begin
                  {ok, TopicList} = topic_list(Topics),
                  Payload = iolist_to_binary(Message),
                  [<<"MESSAGE ">>, lists:join(<<" ">>, TopicList), <<" ">>,
                   integer_to_binary(byte_size(Payload)), <<"\r\n">>,
                   Payload, <<"\r\n">>]
              end || {Topics, Message} <- Entries]}
    catch
        error:{badmatch, {error, _} = Error} -> Error;
        error:_ -> {error, {bad_entries, Entries}}
    end.

%% @doc Parses the block of a `VALUE messages' reply (the entries including
%% the last one's CRLF) into `[{Topics, Message}]'.
-spec parse_messages(binary()) -> {ok, [{[binary()], binary()}]} | {error, term()}.
parse_messages(Block) ->
    parse_messages(Block, []).

parse_messages(<<>>, Acc) ->
    {ok, lists:reverse(Acc)};
parse_messages(Block, Acc) ->
    case binary:split(Block, <<"\r\n">>) of
        [<<"MESSAGE ", Header/binary>>, Rest] ->
            Fields = binary:split(Header, <<" ">>, [global, trim_all]),
            case lists:split(max(length(Fields) - 1, 0), Fields) of
                {Topics = [_ | _], [LenBin]} ->
                    case string:to_integer(LenBin) of
                        {Len, <<>>} when Len >= 0 ->
                            case Rest of
                                <<Payload:Len/binary, "\r\n", More/binary>> ->
                                    parse_messages(More, [{Topics, Payload} | Acc]);
                                _ ->
                                    {error, {bad_block, Block}}
                            end;
                        _ ->
                            {error, {bad_block, Block}}
                    end;
                _ ->
                    {error, {bad_block, Block}}
            end;
        _ ->
            {error, {bad_block, Block}}
    end.

%% @doc The result for a one-line reply (without its line ending).
-spec parse_reply(binary()) -> ok | error().
parse_reply(<<"STORED">>) -> ok;
parse_reply(<<"NOT_FOUND">>) -> {error, not_found};
parse_reply(<<"ERROR">>) -> {error, unknown_command};
parse_reply(<<"CLIENT_ERROR ", Reason/binary>>) -> {error, {client_error, Reason}};
parse_reply(<<"SERVER_ERROR ", Reason/binary>>) -> {error, {server_error, Reason}};
parse_reply(Other) -> {error, {unexpected_reply, Other}}.

%%% Internal functions

topics_command(Sock, Command, Topics) ->
    case join_topics(Topics) of
        {ok, Block} -> set(Sock, Command, Block);
        Error -> Error
    end.

join_topics(Topics) ->
    case topic_list(Topics) of
        {ok, List} -> {ok, lists:join(<<" ">>, List)};
        Error -> Error
    end.

%% A single topic (binary or string) or a list of topics, as binaries.
topic_list(Topic) when is_binary(Topic) ->
    topic_list([Topic]);
topic_list(Topics) when is_list(Topics) ->
    List = case io_lib:char_list(Topics) andalso Topics =/= [] of
               true -> [Topics];
               false -> Topics
           end,
    try [iolist_to_binary(T) || T <- List] of
        Bins ->
            case [B || B <- Bins, not valid_topic(B)] of
                [] -> {ok, Bins};
                [Bad | _] -> {error, {bad_topic, Bad}}
            end
    catch
        error:_ -> {error, {bad_topic, Topics}}
    end;
topic_list(Other) ->
    {error, {bad_topic, Other}}.

valid_topic(<<>>) -> false;
valid_topic(B) -> binary:match(B, [<<" ">>, <<"\r">>, <<"\n">>]) =:= nomatch.

set(Sock, Command, Data) ->
    Bin = iolist_to_binary(Data),
    Request = [<<"set ">>, Command, <<" 0 0 ">>, integer_to_binary(byte_size(Bin)),
               <<"\r\n">>, Bin, <<"\r\n">>],
    case request(Sock, Request) of
        {ok, Line} -> parse_reply(Line);
        Error -> Error
    end.

%% Sends a request and reads one reply line (without its line ending).
request(Sock, Request) ->
    case gen_tcp:send(Sock, Request) of
        ok -> recv_reply(Sock);
        Error -> Error
    end.

%% The next reply line; pushed blocks ahead of it are kept for await_messages/2.
recv_reply(Sock) ->
    case recv_line(Sock) of
        {ok, <<"VALUE messages ", _/binary>> = Line} = Reply ->
            case pushed_block_expected(Sock) of
                true ->
                    {ok, N} = value_line(Line),
                    case receive_value(Sock, N) of
                        Messages when is_list(Messages) ->
                            keep_pushed(Sock, Messages),
                            recv_reply(Sock);
                        Error ->
                            Error
                    end;
                false ->
                    Reply
            end;
        Other ->
            Other
    end.

value_line(<<"VALUE messages ", Rest/binary>>) ->
    case binary:split(Rest, <<" ">>, [global]) of
        [_Flags, N] ->
            try {ok, binary_to_integer(N)} catch error:badarg -> error end;
        _ ->
            error
    end;
value_line(_) ->
    error.

%% Whether a VALUE block can be a push: the request in flight is not a poll.
pushed_block_expected(Sock) ->
    get({kraken_client_polling, Sock}) =/= true.

keep_pushed(Sock, Messages) ->
    put({kraken_client_pushed, Sock}, take_pushed(Sock) ++ Messages).

take_pushed(Sock) ->
    case erase({kraken_client_pushed, Sock}) of
        undefined -> [];
        Messages -> Messages
    end.

recv_line(Sock) ->
    ok = inet:setopts(Sock, [{packet, line}]),
    case gen_tcp:recv(Sock, 0, ?TIMEOUT) of
        {ok, Line} -> {ok, strip_eol(Line)};
        Error -> Error
    end.

recv_exact(_Sock, 0) ->
    {ok, <<>>};
recv_exact(Sock, N) ->
    ok = inet:setopts(Sock, [{packet, raw}]),
    gen_tcp:recv(Sock, N, ?TIMEOUT).

strip_eol(Line) ->
    case binary:longest_common_suffix([Line, <<"\r\n">>]) of
        2 -> binary:part(Line, 0, byte_size(Line) - 2);
        _ -> case binary:last(Line) of
                 $\n -> binary:part(Line, 0, byte_size(Line) - 1);
                 _ -> Line
             end
    end.

%% The block is <n> + 2 bytes long (its last CRLF doubles as the memcached
%% value terminator), then comes "END\r\n".
receive_value(Sock, N) ->
    case recv_exact(Sock, N + 2) of
        {ok, Block} ->
            case recv_line(Sock) of
                {ok, <<"END">>} ->
                    case parse_messages(Block) of
                        {ok, Messages} -> Messages;
                        Error -> Error
                    end;
                {ok, Other} ->
                    {error, {unexpected_reply, Other}};
                Error ->
                    Error
            end;
        Error ->
            Error
    end.

stats_lines(_Sock, <<"END">>, Acc) ->
    {ok, lists:reverse(Acc)};
stats_lines(Sock, <<"STAT ", Stat/binary>> = Line, Acc) ->
    case binary:split(Stat, <<" ">>) of
        [Name, Value] ->
            case recv_line(Sock) of
                {ok, Next} -> stats_lines(Sock, Next, [{Name, Value} | Acc]);
                Error -> Error
            end;
        _ ->
            {error, {unexpected_reply, Line}}
    end;
stats_lines(_Sock, Line, _Acc) ->
    parse_reply(Line).
