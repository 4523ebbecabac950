%% @doc The decisions of moves (kraken_cluster_move, docs/cluster.md
%% "Moves"), as pure functions: view order, leader, the phases and their
%% barrier, aborts, the engine's owner sets, drained.
-module(kraken_cluster_move_tests).

-include_lib("eunit/include/eunit.hrl").

-define(M, kraken_cluster_move).

newer_test() ->
    V = {3, prepare, <<"a">>, [<<"a">>], [<<"a">>, <<"b">>]},
    ?assert(?M:newer(V, undefined)),
    ?assertNot(?M:newer(undefined, V)),
    ?assertNot(?M:newer(V, V)),
    %% phase, then epoch, then leader
    ?assert(?M:newer(setelement(2, V, switch), V)),
    ?assert(?M:newer(setelement(2, V, stable), setelement(2, V, switch))),
    ?assert(?M:newer({4, prepare, <<"a">>, [], []}, setelement(2, V, stable))),
    ?assert(?M:newer(setelement(3, V, <<"b">>), V)).

leader_test() ->
    V = {1, stable, <<"b">>, [<<"b">>, <<"c">>], [<<"b">>, <<"c">>]},
    ?assertEqual(<<"b">>, ?M:leader(V, [<<"a">>, <<"b">>, <<"c">>])),   % a: not an owner yet
    ?assertEqual(<<"c">>, ?M:leader(V, [<<"a">>, <<"c">>])),
    ?assertEqual(<<"a">>, ?M:leader(V, [<<"a">>])),   % no owner live: the smallest live
    ?assertEqual(<<"a">>, ?M:leader(undefined, [<<"b">>, <<"a">>])),
    ?assertEqual(undefined, ?M:leader(undefined, [])).

desired_test() ->
    ?assertEqual([<<"a">>, <<"c">>], ?M:desired([<<"c">>, <<"b">>, <<"a">>], [<<"b">>])),
    %% all draining (e.g. all stopped at once): nobody moves
    ?assertEqual([<<"a">>, <<"b">>], ?M:desired([<<"a">>, <<"b">>], [<<"a">>, <<"b">>])).

%% A whole join, c joining a and b: prepare, switch, release, each only
%% once every member applied the last view and synced.
join_test() ->
    Old = [<<"a">>, <<"b">>],
    New = [<<"a">>, <<"b">>, <<"c">>],
    S0 = {1, stable, <<"a">>, Old, Old},
    P = {2, prepare, <<"a">>, Old, New},
    ?assertEqual({P, prepare}, ?M:next(<<"a">>, S0, [{S0, true}, {undefined, false}], true,
                                       {New, 0})),
    %% not everyone applied (or synced) the prepare: wait
    ?assertEqual(keep, ?M:next(<<"a">>, P, [{P, true}, {S0, true}], true, {New, 10})),
    ?assertEqual(keep, ?M:next(<<"a">>, P, [{P, true}, {P, false}], true, {New, 10})),
    ?assertEqual(keep, ?M:next(<<"a">>, P, [{P, true}, {P, true}], false, {New, 10})),
    Sw = {2, switch, <<"a">>, New, Old},
    ?assertEqual({Sw, switch}, ?M:next(<<"a">>, P, [{P, true}, {P, true}], true, {New, 10})),
    ?assertEqual(keep, ?M:next(<<"a">>, Sw, [{Sw, true}, {P, true}], true, {New, 10})),
    R = {2, stable, <<"a">>, New, New},
    ?assertEqual({R, release}, ?M:next(<<"a">>, Sw, [{Sw, true}, {Sw, true}], true, {New, 10})),
    ?assertEqual(keep, ?M:next(<<"a">>, R, [{R, true}, {Sw, true}], true, {New, 10})).

%% A prepare whose target changed, or that times out, is aborted; a switch
%% that times out is completed.
abort_test() ->
    Old = [<<"a">>, <<"b">>],
    New = [<<"a">>, <<"b">>, <<"c">>],
    P = {2, prepare, <<"a">>, Old, New},
    Abort = {3, stable, <<"a">>, Old, Old},
    ?assertEqual({Abort, abort}, ?M:next(<<"a">>, P, [{P, true}], true, {Old, 10})),
    ?assertEqual({Abort, abort}, ?M:next(<<"a">>, P, [{P, false}], true, {New, 6000})),
    Sw = {2, switch, <<"a">>, New, Old},
    ?assertEqual({{2, stable, <<"a">>, New, New}, release},
                 ?M:next(<<"a">>, Sw, [{P, true}], true, {New, 6000})).

bootstrap_test() ->
    ?assertEqual({{1, stable, <<"a">>, [<<"a">>], [<<"a">>]}, bootstrap},
                 ?M:next(<<"a">>, undefined, [{undefined, false}], false, {[<<"a">>], 0})),
    %% someone has a view already: adopt it rather than make one
    ?assertEqual(keep, ?M:next(<<"a">>, undefined, [{{1, stable, <<"b">>, [], []}, true}],
                               false, {[<<"a">>], 0})).

engine_sets_test() ->
    Live = [<<"a">>, <<"b">>, <<"c">>],
    Ups = [<<"10.0.0.1:1">>],
    %% no view: every live core owns, and the upstreams
    ?assertEqual({Ups ++ Live, Ups ++ Live}, ?M:engine_sets(undefined, Live, Ups)),
    V = {2, switch, <<"a">>, [<<"a">>, <<"c">>, <<"d">>], [<<"a">>, <<"b">>]},
    ?assertEqual({[<<"a">>, <<"c">>], [<<"a">>, <<"b">>]}, ?M:engine_sets(V, Live, [])),
    %% none of the owners live: every live core
    ?assertEqual({Live, [<<"a">>, <<"b">>]},
                 ?M:engine_sets({2, switch, <<"a">>, [<<"x">>], [<<"a">>, <<"b">>]}, Live, [])),
    %% none of the owners live here, but x is live for another member (a
    %% node back from the minority side, hearing a proxy before the core
    %% that owns everything now): nobody here takes its topics
    ?assertEqual({[], []},
                 ?M:engine_sets({3, stable, <<"x">>, [<<"x">>], [<<"x">>]}, [<<"a">>],
                                [<<"x">>], [])),
    ?assertEqual({[<<"a">>], [<<"a">>]},
                 ?M:engine_sets({3, stable, <<"x">>, [<<"x">>], [<<"x">>]}, [<<"a">>],
                                [<<"b">>], [])).

engine_missing_test() ->
    V = {2, stable, <<"a">>, [<<"a">>, <<"b">>, <<"c">>], [<<"a">>, <<"b">>, <<"c">>]},
    %% every owner live here, or the one not live here seen by nobody (it failed)
    ?assertEqual({[], []}, ?M:engine_missing(V, [<<"a">>, <<"b">>, <<"c">>], [])),
    ?assertEqual({[], []}, ?M:engine_missing(V, [<<"a">>, <<"b">>], [<<"a">>])),
    %% c not live here but live for a member: missing
    ?assertEqual({[<<"c">>], [<<"c">>]},
                 ?M:engine_missing(V, [<<"a">>, <<"b">>], [<<"a">>, <<"c">>])),
    %% no core live here at all: every owner is missing
    ?assertEqual({[<<"a">>, <<"b">>, <<"c">>], [<<"a">>, <<"b">>, <<"c">>]},
                 ?M:engine_missing(V, [], [])),
    %% a prepare's other set takes no entry yet
    P = {3, prepare, <<"a">>, [<<"a">>, <<"b">>], [<<"a">>, <<"b">>, <<"d">>]},
    ?assertEqual({[], []}, ?M:engine_missing(P, [<<"a">>, <<"b">>], [<<"d">>])),
    S = {3, switch, <<"a">>, [<<"a">>, <<"b">>, <<"d">>], [<<"a">>, <<"b">>]},
    ?assertEqual({[<<"d">>], []}, ?M:engine_missing(S, [<<"a">>, <<"b">>], [<<"d">>])),
    ?assertEqual({[], []}, ?M:engine_missing(undefined, [], [])).

drained_test() ->
    R = {2, stable, <<"a">>, [<<"a">>], [<<"a">>]},
    ?assert(?M:drained(<<"b">>, {R, true}, [{R, true}])),
    ?assertNot(?M:drained(<<"b">>, {R, true}, [{R, false}])),   % someone did not sync yet
    ?assertNot(?M:drained(<<"b">>, {R, false}, [{R, true}])),
    ?assertNot(?M:drained(<<"a">>, {R, true}, [{R, true}])),     % it owns
    Sw = {2, switch, <<"a">>, [<<"a">>], [<<"a">>, <<"b">>]},
    ?assertNot(?M:drained(<<"b">>, {Sw, true}, [{Sw, true}])).

%% The leader's step: only the leader moves; the nodes of the move are
%% those live at the prepare, kept through the switch; a silent member of
%% the move whose node is still connected is waited for.
lead_test() ->
    Old = [<<"a">>, <<"b">>],
    New = [<<"a">>, <<"b">>, <<"c">>],
    S0 = {1, stable, <<"a">>, Old, Old},
    Cores = [{<<"a">>, false}, {<<"b">>, false}, {<<"c">>, false}],
    Movers = [{b@h, S0, true}, {p@h, S0, true}],
    ?assertEqual(keep, ?M:lead(<<"b">>, {S0, true, 0}, Cores, [{a@h, S0, true}], [], [a@h])),
    P = {2, prepare, <<"a">>, Old, New},
    ?assertEqual({P, prepare, [b@h, p@h], []},
                 ?M:lead(<<"a">>, {S0, true, 0}, Cores, Movers, [], [b@h, p@h])),
    %% p went silent, its node still connected: waited for
    Movers2 = [{b@h, P, true}],
    ?assertEqual(keep, ?M:lead(<<"a">>, {P, true, 10}, Cores, Movers2, [b@h, p@h], [b@h, p@h])),
    %% its node gone: not waited for; the switch keeps the move's nodes
    Sw = {2, switch, <<"a">>, New, Old},
    ?assertEqual({Sw, switch, [b@h, p@h], []},
                 ?M:lead(<<"a">>, {P, true, 10}, Cores, Movers2, [b@h, p@h], [b@h])),
    %% past the phase's timeout, completed without the silent one, said
    ?assertEqual({{2, stable, <<"a">>, New, New}, release, [], [p@h]},
                 ?M:lead(<<"a">>, {Sw, true, 6000}, Cores, Movers2, [b@h, p@h], [b@h, p@h])).

%% A node synced on a move only once it sees every new owner live.
sees_owners_test() ->
    Old = [<<"a">>, <<"b">>],
    New = [<<"a">>, <<"b">>, <<"c">>],
    ?assertNot(?M:sees_owners({2, prepare, <<"a">>, Old, New}, Old)),
    ?assert(?M:sees_owners({2, prepare, <<"a">>, Old, New}, New)),
    ?assertNot(?M:sees_owners({2, switch, <<"a">>, New, Old}, Old)),
    ?assert(?M:sees_owners({2, stable, <<"a">>, New, New}, Old)),   % a failed core: not asked
    ?assert(?M:sees_owners(undefined, [])).
