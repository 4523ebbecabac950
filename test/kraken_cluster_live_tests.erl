%% @doc Who is live and what the engine is told of it, as pure functions
%% (kraken_cluster_live, kraken_cluster_owners; docs/cluster.md
%% "Membership and failure detection").
-module(kraken_cluster_live_tests).

-include_lib("eunit/include/eunit.hrl").

-define(L, kraken_cluster_live).
-define(O, kraken_cluster_owners).

info(Node, Role) ->
    #{node => Node, role => Role, parents => [], host => <<"10.0.0.1">>, port => 15001}.

%% Live within the deadline (1600 ms); a stop's gap is not counted as
%% silence, but nobody is heard after now.
live_test() ->
    C2 = info(c2@h, core),
    P1 = info(p1@h, proxy),
    Members = #{list_to_pid("<0.1.0>") => {C2, 1000}, list_to_pid("<0.2.0>") => {P1, 2000}},
    ?assertEqual([C2, P1], ?L:live(Members, 2600)),
    ?assertEqual([P1], ?L:live(Members, 2601)),
    {Live, Dead} = ?L:split(Members, 2601),
    ?assertEqual([{P1, 2000}], maps:values(Live)),
    ?assertEqual([{C2, 1000}], Dead),
    Shifted = ?L:shift(Members, 5000, 4000),
    ?assertEqual([{C2, 4000}, {P1, 4000}], maps:values(Shifted)).

%% A core without the quorum is not a live core, and what it reports is
%% not believed; a core seen only by others counts when it owns topics.
cores_test() ->
    C2 = (info(c2@h, core))#{live => [<<"c2@h">>, <<"c4@h">>]},
    C3 = (info(c3@h, core))#{quorum => false, draining => true, live => [<<"c5@h">>]},
    P1 = (info(p1@h, proxy))#{live => [<<"c6@h">>]},
    Me = atom_to_binary(node()),
    ?assertEqual(lists:sort([{Me, true}, {<<"c2@h">>, false}]),
                 ?L:cores({core, true}, [C2, C3, P1])),
    ?assertEqual([{<<"c2@h">>, false}], ?L:cores({proxy, false}, [C2, C3, P1])),
    Seen = ?L:seen_names([C2, C3, P1]),
    ?assertEqual([<<"c2@h">>, <<"c4@h">>, <<"c6@h">>], Seen),
    View = {1, stable, <<"c2@h">>, [<<"c2@h">>, <<"c4@h">>], [<<"c2@h">>, <<"c4@h">>]},
    ?assertEqual([{<<"c2@h">>, false}, {<<"c4@h">>, false}],
                 ?L:seen_cores([{<<"c2@h">>, false}], Seen, View)),
    ?assertEqual([P1], ?L:movers([C3, P1, P1#{parents => [c2@h]}])).

%% A proxy below parents is no voter.
quorum_input_test() ->
    Q1 = (info(q1@h, proxy))#{parents => [p1@h]},
    C2 = (info(c2@h, core))#{voters => #{c2@h => core}, quorum => true, hears => [],
                              in_cluster => true},
    {Live, Heard} = ?L:quorum_input(core, [Q1, C2]),
    ?assertEqual(#{node() => core, c2@h => core}, Live),
    ?assertEqual(#{c2@h => {#{c2@h => core}, true, [], true}}, Heard),
    ?assertEqual([c2@h], ?L:hears([Q1, C2])).

%% Without the quorum the engine gets no live core, only the static
%% upstreams; with it, the live cores with the quorum, this one among them.
engine_cores_test() ->
    Mine = info(node(), core),
    C2 = info(c2@h, core),
    C3 = (info(c3@h, core))#{quorum => false},
    Up = {<<"up:1">>, <<"10.0.0.9">>, 1, 1000},
    Me = atom_to_binary(node()),
    ?assertEqual({[Up], [<<"up:1">>], [<<"up:1">>], [], []},
                 ?O:cores(false, [Mine], [C2, C3], [Up], undefined)),
    {Links, Owners, Owners, [], []} = ?O:cores(true, [Mine], [C2, C3], [Up], undefined),
    ?assertEqual(lists:sort([{Me, <<"10.0.0.1">>, 15001}, {<<"c2@h">>, <<"10.0.0.1">>, 15001},
                             Up]), Links),
    ?assertEqual(lists:sort([Me, <<"c2@h">>, <<"up:1">>]), Owners).

%% A child's engine links to its live parents; one whose parents lead back
%% here (a cycle of `parents') is not used.
engine_parents_test() ->
    P1 = info(p1@h, proxy),
    P2 = (info(p2@h, proxy))#{parents => [p3@h]},
    P3 = (info(p3@h, proxy))#{parents => [node()]},
    Link = {<<"p1@h">>, <<"10.0.0.1">>, 15001, 0, parent},
    ?assertEqual({{[Link], [<<"p1@h">>], [<<"p1@h">>], [], []}, [p2@h]},
                 ?O:parents([p1@h, p2@h], [P1, P2, P3], [])).
