%% @doc The nodes that have a forwarded entry already (docs/cluster.md,
%% "Moves", the peer rules; c_src/cluster_origin.c): while views differ
%% (after a failure, in a partition), core A gets on the link of node P an
%% entry whose topic it owns under neither owner set; A delivers it to its
%% own subscribers (the peers holding the topic there too) and forwards it
%% to the owner it sees, core B, naming P and those peers (`set
%% link_forward'). B delivers it to its subscribers and to every other
%% peer holding the topic, by topic or pattern, but not to the links of the
%% nodes named: they delivered it to their own clients already (before, P's
%% subscribers got it twice, and so did those of a node holding the topic
%% at both A and B).
%%
%% Two engines a and b on their control channel, the views chosen by the
%% test: both say b owns every topic. The test's connections play the
%% nodes p, q and r (`set peer'), as they would: p at a, p and q holding the
%% topic (and a pattern) at b, r holding the topic at a and the same at b.
%% Deterministic: a marker published at b after the entry is the last thing
%% each connection at b gets, so everything before it is all it got of the
%% entry.
-module(kraken_cluster_origin_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_refuse_tests, [call/3, packet/2]).

origin_test_() ->
    {timeout, 60, {"a peer's entry forwarded by a core that does not own its topic reaches "
                   "every subscriber once: not the link of the node it was published on at the "
                   "owner (by topic or pattern), nor that of a node that had it from the "
                   "forwarding core", fun forwarded/0}}.

chain_test_() ->
    {timeout, 60, {"a forward forwarded again (the second core's view differs too) names the "
                   "nodes it was given, the core it came from and that core's peers holding "
                   "the topic: none of them gets it from the last owner", fun chain/0}}.

three_views_test_() ->
    {timeout, 60, {"a core that forwards a peer's entry while views differ leaves the "
                   "link of the node it forwards it to out: that node's clients get it once, "
                   "from the forward (its view making the first core a move's other owner, "
                   "they got it twice)", fun three_views/0}}.

crossed_test_() ->
    {timeout, 60, {"two cores whose views each make the other the owner of a topic: the "
                   "forward ends at the second (it would go back to a node that has it), "
                   "which delivers it as entered there; every holder gets it once, by topic "
                   "or pattern, the publisher gets STORED and both links stay up (they "
                   "passed it back and forth until the links closed)", fun crossed/0}}.

forwarded() ->
    {A, APort} = start_engine(),
    {B, BPort} = start_engine(),
    try
        Members = [{<<"a">>, <<"127.0.0.1">>, APort}, {<<"b">>, <<"127.0.0.1">>, BPort}],
        ok = call(B, 1, {cluster, {<<"b">>, Members, [<<"b">>], []}}),
        ok = call(A, 1, {cluster, {<<"a">>, Members, [<<"b">>], []}}),
        [ok = kraken_cluster_tests:wait_until(
                fun() -> [up] =:= [St || {N, St, _, _, _, _, _, _, _}
                                             <- call(E, 2, cluster_status), N =:= Other]
                end, 5000) || {E, Other} <- [{A, <<"b">>}, {B, <<"a">>}]],
        T = <<"orig_t">>,    % held by topic
        T2 = <<"orig_pat">>, % held through the pattern only
        Pat = <<"orig_p*">>,
        [<<"b">> = call(A, 3, {cluster_owner, X}) || X <- [T, T2]],
        %% Plain subscribers of T on a (subscribed upstream at b) and on b.
        SA = conn(APort, [push(), set(<<"subscribe">>, T)], 2),
        SB = conn(BPort, [push(), set(<<"subscribe">>, T)], 2),
        %% The nodes' links: p at a (to publish) and at b, q at b.
        PA = conn(APort, [push(), set(<<"peer">>, <<"p">>)], 2),
        Hold = [set(<<"subscribe">>, T), set(<<"link_psubscribe">>, Pat)],
        PB = conn(BPort, [push(), set(<<"peer">>, <<"p">>) | Hold], 4),
        QB = conn(BPort, [push(), set(<<"peer">>, <<"q">>) | Hold], 4),
        %% p publishes on its link to a; a answers once b confirmed.
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T, T2], <<"x">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        %% The marker: a client of b publishes on T (b's own: to every node).
        M = conn(BPort, [], 0),
        Marker = fun(P) ->
                         ok = gen_tcp:send(M, set(<<"publish">>, entry([T], P))),
                         ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(M, 0, 5000))
                 end,
        Marker(<<"m">>),
        %% What X got of entry Payload before the marker: its MESSAGE lines.
        Got = fun(X, Payload, Mark) ->
                      Bytes = recv_until(X, <<"\r\n", Mark/binary, "\r\n">>),
                      Tail = <<"\r\n", Payload/binary, "\r\n">>,
                      [binary:part(E, 0, At + byte_size(Tail))
                       || E <- binary:split(Bytes, <<"MESSAGE ">>, [global]),
                          {At, _} <- [binary:match(E, Tail)]]
              end,
        %% Each subscriber of T once, listing what it holds.
        [?assertEqual([<<"orig_t 1\r\nx\r\n">>], Got(S, <<"x">>, <<"m">>)) || S <- [SA, SB]],
        %% q once, both topics; p nothing (it used to get it from b).
        ?assertEqual([<<"orig_t orig_pat 1\r\nx\r\n">>], Got(QB, <<"x">>, <<"m">>)),
        ?assertEqual([], Got(PB, <<"x">>, <<"m">>)),
        %% Node r holds T at a (its view makes a an owner: a delivers p's
        %% entries to it) and, at b, T and the pattern.  p's next entry:
        %% r gets T from a only, T2 from b only (it got T twice); q gets
        %% each topic once, in two MESSAGE lines (b got them in two: the
        %% nodes that have them differ).
        RA = conn(APort, [push(), set(<<"peer">>, <<"r">>), set(<<"subscribe">>, T)], 3),
        RB = conn(BPort, [push(), set(<<"peer">>, <<"r">>) | Hold], 4),
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T, T2], <<"y">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        Marker(<<"n">>),
        [?assertEqual([<<"orig_t 1\r\ny\r\n">>], Got(S, <<"y">>, <<"n">>)) || S <- [SA, SB]],
        ?assertEqual([], Got(PB, <<"y">>, <<"n">>)),
        ?assertEqual([<<"orig_t 1\r\ny\r\n">>], recv_entries(RA, <<"y">>)),
        ?assertEqual([<<"orig_pat 1\r\ny\r\n">>], Got(RB, <<"y">>, <<"n">>)),
        ?assertEqual([<<"orig_t 1\r\ny\r\n">>, <<"orig_pat 1\r\ny\r\n">>],
                     Got(QB, <<"y">>, <<"n">>)),
        [gen_tcp:close(X) || X <- [SA, SB, PA, PB, QB, RA, RB, M]]
    after
        [catch port_close(E) || E <- [A, B]]
    end.

%% Three engines: a's view makes b the owner of every topic, b's c, c's c.
%% p publishes on its link to a; a forwards to b naming p; b, owning none
%% either, forwards to c naming p, a, and q (b's peer holding the topic).
%% At c the links of p, a (the test's own and a's real one) and q get
%% nothing of it; z's link and a plain subscriber get it once.
chain() ->
    Engines = [start_engine() || _ <- [a, b, c]],
    [{A, APort}, {B, BPort}, {C, CPort}] = Engines,
    try
        Members = [{<<"a">>, <<"127.0.0.1">>, APort}, {<<"b">>, <<"127.0.0.1">>, BPort},
                   {<<"c">>, <<"127.0.0.1">>, CPort}],
        [ok = call(E, 1, {cluster, {Self, Members, [Owner], []}})
         || {E, Self, Owner} <- [{C, <<"c">>, <<"c">>}, {B, <<"b">>, <<"c">>},
                                 {A, <<"a">>, <<"b">>}]],
        [ok = kraken_cluster_tests:wait_until(
                fun() -> lists:sort([N || {N, up, _, _, _, _, _, _, _}
                                              <- call(E, 2, cluster_status)]) =:= Others
                end, 5000)
         || {E, Others} <- [{A, [<<"b">>, <<"c">>]}, {B, [<<"a">>, <<"c">>]},
                            {C, [<<"a">>, <<"b">>]}]],
        T = <<"chain_t">>,
        <<"b">> = call(A, 3, {cluster_owner, T}),
        <<"c">> = call(B, 3, {cluster_owner, T}),
        Holder = fun(Port, Name) ->
                         conn(Port, [push(), set(<<"peer">>, Name), set(<<"subscribe">>, T)], 3)
                 end,
        QB = Holder(BPort, <<"q">>),
        Named = [Holder(CPort, N) || N <- [<<"p">>, <<"a">>, <<"q">>]],
        Others = [Holder(CPort, <<"z">>), conn(CPort, [push(), set(<<"subscribe">>, T)], 2)],
        PA = conn(APort, [push(), set(<<"peer">>, <<"p">>)], 2),
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T], <<"x">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        M = conn(CPort, [set(<<"publish">>, entry([T], <<"m">>))], 1),
        Before = fun(X) -> recv_until(X, <<"\r\nm\r\n">>) end,
        Once = <<"MESSAGE chain_t 1\r\nx\r\n">>,
        [?assertEqual(nomatch, binary:match(Before(X), <<"\r\nx\r\n">>)) || X <- Named],
        [?assertEqual(1, length(binary:matches(Before(X), Once))) || X <- Others],
        ?assertEqual([<<"chain_t 1\r\nx\r\n">>], recv_entries(QB, <<"x">>)),
        [gen_tcp:close(X) || X <- [QB, PA, M | Named ++ Others]]
    after
        [catch port_close(E) || {E, _} <- Engines]
    end.

%% Publisher p's view makes a the owner of T, a's makes b, b's makes both
%% (a move from a to b: b is subscribed at a too). a forwards p's entry to
%% b, and used to push it on b's link as well.
three_views() ->
    {A, APort} = start_engine(),
    {B, BPort} = start_engine(),
    try
        Members = [{<<"a">>, <<"127.0.0.1">>, APort}, {<<"b">>, <<"127.0.0.1">>, BPort}],
        ok = call(B, 1, {cluster, {<<"b">>, Members, [<<"b">>], [<<"a">>]}}),
        ok = call(A, 1, {cluster, {<<"a">>, Members, [<<"b">>], []}}),
        links_up([{A, <<"b">>}, {B, <<"a">>}]),
        T = <<"three_t">>,
        <<"b">> = call(A, 3, {cluster_owner, T}),
        %% SB's reply waits for a's STORED too: b holds T at a from then on.
        SB = conn(BPort, [push(), set(<<"subscribe">>, T)], 2),
        %% z holds T at a (a delivers p's entries to it): a still does.
        ZA = conn(APort, [push(), set(<<"peer">>, <<"z">>), set(<<"subscribe">>, T)], 3),
        PA = conn(APort, [push(), set(<<"peer">>, <<"p">>)], 2),
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T], <<"three-x">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        ?assertEqual(1, quiet_count(SB, <<"three-x">>)),
        ?assertEqual(1, quiet_count(ZA, <<"three-x">>)),
        [gen_tcp:close(X) || X <- [SB, ZA, PA]]
    after
        [catch port_close(E) || E <- [A, B]]
    end.

%% a's view makes b the owner of T, b's makes a (both drained, say, in
%% views that crossed). Each node's clients hold T there, so each is
%% subscribed at the other; z holds T at a, r at b, q a matching pattern at
%% both (a node holds its patterns at every core). p publishes on its link
%% to a.
crossed() ->
    {A, APort} = start_engine(),
    {B, BPort} = start_engine(),
    try
        Members = [{<<"a">>, <<"127.0.0.1">>, APort}, {<<"b">>, <<"127.0.0.1">>, BPort}],
        ok = call(B, 1, {cluster, {<<"b">>, Members, [<<"a">>], []}}),
        ok = call(A, 1, {cluster, {<<"a">>, Members, [<<"b">>], []}}),
        links_up([{A, <<"b">>}, {B, <<"a">>}]),
        T = <<"crossed_t">>,
        Pat = <<"crossed_*">>,
        <<"b">> = call(A, 3, {cluster_owner, T}),
        <<"a">> = call(B, 3, {cluster_owner, T}),
        SA = conn(APort, [push(), set(<<"subscribe">>, T)], 2),
        SB = conn(BPort, [push(), set(<<"subscribe">>, T)], 2),
        ZA = conn(APort, [push(), set(<<"peer">>, <<"z">>), set(<<"subscribe">>, T)], 3),
        RB = conn(BPort, [push(), set(<<"peer">>, <<"r">>), set(<<"subscribe">>, T)], 3),
        QA = conn(APort, [push(), set(<<"peer">>, <<"q">>), set(<<"link_psubscribe">>, Pat)], 3),
        QB = conn(BPort, [push(), set(<<"peer">>, <<"q">>), set(<<"link_psubscribe">>, Pat)], 3),
        PA = conn(APort, [push(), set(<<"peer">>, <<"p">>)], 2),
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T], <<"crossed-x">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        [?assertEqual({X, 1}, {X, quiet_count(S, <<"crossed-x">>)})
         || {X, S} <- [{sa, SA}, {sb, SB}, {za, ZA}, {rb, RB}]],
        ?assertEqual(1, quiet_count(QA, <<"crossed-x">>) + quiet_count(QB, <<"crossed-x">>)),
        ?assertEqual(0, quiet_count(PA, <<"crossed-x">>)),
        %% Nothing broke: both links are still up, and a second entry
        %% goes the same way.
        links_up([{A, <<"b">>}, {B, <<"a">>}]),
        ok = gen_tcp:send(PA, set(<<"publish">>, entry([T], <<"crossed-y">>))),
        ?assertEqual({ok, <<"STORED\r\n">>}, gen_tcp:recv(PA, 0, 5000)),
        [?assertEqual({X, 1}, {X, quiet_count(S, <<"crossed-y">>)})
         || {X, S} <- [{sa, SA}, {sb, SB}, {za, ZA}, {rb, RB}]],
        [gen_tcp:close(X) || X <- [SA, SB, ZA, RB, QA, QB, PA]]
    after
        [catch port_close(E) || E <- [A, B]]
    end.

links_up(Pairs) ->
    [ok = kraken_cluster_tests:wait_until(
            fun() -> [up] =:= [St || {N, St, _, _, _, _, _, _, _} <- call(E, 2, cluster_status),
                                     N =:= Other]
            end, 5000) || {E, Other} <- Pairs],
    ok.

%% How many of X's MESSAGE entries carry Payload, reading until X has
%% been quiet for 300 ms (a copy more would come within that on loopback).
quiet_count(X, Payload) ->
    Acc = case get({buf, X}) of undefined -> <<>>; B -> B end,
    put({buf, X}, <<>>),
    Bytes = quiet(X, Acc),
    length(binary:matches(Bytes, <<"\r\n", Payload/binary, "\r\n">>)).

quiet(X, Acc) ->
    case gen_tcp:recv(X, 0, 300) of
        {ok, More} -> quiet(X, <<Acc/binary, More/binary>>);
        {error, timeout} -> Acc
    end.

%% An engine on its control channel, configured as a node in a cluster is
%% (but waiting for no view: the test sends it before connecting).
start_engine() ->
    Port = open_port({spawn_executable, kraken_cluster_tests:engine_path()},
                     [{packet, 4}, binary, exit_status, use_stdio, {args, []}]),
    true = port_command(Port, term_to_binary({config, [{tcp_server_port, 0},
                                                       {listen_ip, <<"127.0.0.1">>}]})),
    {ready, Listen} = packet(Port, fun({ready, _}) -> true; (_) -> false end),
    {Port, Listen}.

push() -> <<"set push 0 0 2\r\non\r\n">>.

set(Cmd, Data) ->
    [<<"set ">>, Cmd, <<" 0 0 ">>, integer_to_binary(iolist_size(Data)), <<"\r\n">>, Data,
     <<"\r\n">>].

entry(Topics, Payload) ->
    [<<"MESSAGE ">>, lists:join(<<" ">>, Topics), <<" ">>,
     integer_to_binary(byte_size(Payload)), <<"\r\n">>, Payload, <<"\r\n">>].

%% A raw connection that sent Requests and got N replies, each STORED.
conn(Port, Requests, N) ->
    {ok, X} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(X, Requests),
    [?assertEqual(binary:copy(<<"STORED\r\n">>, N), recv_until(X, binary:copy(<<"STORED\r\n">>, N)))
     || N > 0],
    X.

%% What X is sent up to and including Last; what came after is kept for
%% the next call.
recv_until(X, Last) ->
    Acc = case get({buf, X}) of undefined -> <<>>; B -> B end,
    recv_until(X, Last, Acc).

recv_until(X, Last, Acc) ->
    case binary:match(Acc, Last) of
        nomatch ->
            {ok, More} = gen_tcp:recv(X, 0, 5000),
            recv_until(X, Last, <<Acc/binary, More/binary>>);
        {At, Len} ->
            <<Got:(At + Len)/binary, Rest/binary>> = Acc,
            put({buf, X}, Rest),
            Got
    end.

%% The MESSAGE lines of X's next pushed block that carry Payload (RA at a
%% holds T only, so no marker reaches it: its block is the entry's alone).
recv_entries(X, Payload) ->
    Bytes = recv_until(X, <<"END\r\n">>),
    Tail = <<"\r\n", Payload/binary, "\r\n">>,
    [binary:part(E, 0, At + byte_size(Tail))
     || E <- binary:split(Bytes, <<"MESSAGE ">>, [global]),
        {At, _} <- [binary:match(E, Tail)]].
