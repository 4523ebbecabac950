%% EUnit tests of kraken_cluster_quorum: who has the quorum as members come,
%% fail, are cut off and leave (docs/cluster.md,
%% "Quorum").
-module(kraken_cluster_quorum_tests).

-include_lib("eunit/include/eunit.hrl").

%% The simulation harness, for kraken_cluster_quorum_review_tests too.
-export([live/1, role/1, rounds/4, all_see/1, has/1, cluster/1]).

-define(Q, kraken_cluster_quorum).

live(Names) ->
    maps:from_list([{N, role(N)} || N <- Names]).

role(N) ->
    case atom_to_list(N) of
        "c" ++ _ -> core;
        _ -> proxy
    end.

%% Every node of Names, stepped at Now with what Sees (node => the nodes it
%% hears) says, and the others' previous states as their heartbeats.
round(Qs, Sees, Now) ->
    maps:map(fun(N, Q) ->
                     Hears = maps:get(N, Sees) -- [N],
                     Heard = maps:from_list([{M, report(M, Qs, Sees)} || M <- Hears]),
                     ?Q:step(Q, live([N | Hears]), Heard, Now)
             end, Qs).

%% What M's heartbeat says: its voters, whether it has the quorum, whom it
%% hears.
report(M, Qs, Sees) ->
    Q = maps:get(M, Qs),
    {?Q:voters(Q), ?Q:has(Q), maps:get(M, Sees) -- [M], ?Q:ever(Q)}.

rounds(Qs, _Sees, Now, 0) -> {Qs, Now};
rounds(Qs, Sees, Now, K) -> rounds(round(Qs, Sees, Now), Sees, Now + 200, K - 1).

all_see(Names) ->
    maps:from_list([{N, Names} || N <- Names]).

has(Qs) ->
    lists:sort([N || {N, Q} <- maps:to_list(Qs), ?Q:has(Q)]).

%% c1 started with no node to join, the others joining it.
cluster(Names = [Seed | Rest]) ->
    Qs0 = maps:from_list([{Seed, ?Q:new(Seed, role(Seed), false, 0)} |
                          [{N, ?Q:new(N, role(N), true, 0)} || N <- Rest]]),
    {Qs, Now} = rounds(Qs0, all_see(Names), 0, 4),
    ?assertEqual(lists:sort(Names), has(Qs)),
    {Qs, Now}.

seed_and_joiners_test() ->
    Seed = ?Q:new(c1, core, false, 0),
    ?assert(?Q:has(Seed)),
    Joiner = ?Q:new(p1, proxy, true, 0),
    ?assertNot(?Q:has(Joiner)),
    %% The seed's voters do not list p1 yet: p1 waits.
    J1 = ?Q:step(Joiner, live([p1, c1]), #{c1 => {?Q:voters(Seed), true, [p1], true}}, 0),
    ?assertNot(?Q:has(J1)),
    S1 = ?Q:step(Seed, live([c1, p1]), #{p1 => {?Q:voters(J1), false, [c1], false}}, 0),
    ?assertEqual(live([c1, p1]), ?Q:voters(S1)),
    J2 = ?Q:step(J1, live([p1, c1]), #{c1 => {?Q:voters(S1), true, [p1], true}}, 200),
    ?assert(?Q:has(J2)),
    {Qs, _} = cluster([c1, c2, c3, p1, p2]),
    [?assertEqual(live([c1, c2, c3, p1, p2]), ?Q:voters(Q)) || Q <- maps:values(Qs)].

new_cluster_every_node_joining_test() ->
    %% c1 joins c2 and c2 joins c1, started together: they form one.
    Qs0 = #{c1 => ?Q:new(c1, core, true, 1000), c2 => ?Q:new(c2, core, true, 1000)},
    {Qs, _} = rounds(Qs0, all_see([c1, c2]), 0, 3),
    ?assertEqual([c1, c2], has(Qs)),
    ?assertEqual(live([c1, c2]), ?Q:voters(maps:get(c2, Qs))).

joiner_hearing_nobody_test() ->
    %% Started before the nodes it names: it waits until its start-up
    %% wait is over, then forms a cluster alone (as before the quorum).
    {Qs0, Now0} = rounds(#{c2 => ?Q:new(c2, core, true, 1000)}, #{c2 => [c2]}, 0, 5),
    ?assertEqual([], has(Qs0)),
    {Qs1, _} = rounds(Qs0, #{c2 => [c2]}, Now0, 1),
    ?assertEqual([c2], has(Qs1)).

%% cluster_join_only (AloneAt infinity): a node (re)started while it hears
%% nobody never forms a cluster alone, however long it waits; it is
%% admitted once it hears a member with the quorum, and two such nodes
%% started together still form one.
join_only_test() ->
    {Qs0, Now0} = rounds(#{c2 => ?Q:new(c2, core, true, infinity)}, #{c2 => [c2]}, 0, 100),
    ?assertEqual([], has(Qs0)),
    {Cl, Now1} = cluster([c1, c3]),
    Qs1 = maps:merge(Cl, Qs0),
    {Qs2, _} = rounds(Qs1, all_see([c1, c2, c3]), max(Now0, Now1), 4),
    ?assertEqual([c1, c2, c3], has(Qs2)),
    Pair = #{c1 => ?Q:new(c1, core, true, infinity), c2 => ?Q:new(c2, core, true, infinity)},
    {Qs3, _} = rounds(Pair, all_see([c1, c2]), 0, 3),
    ?assertEqual([c1, c2], has(Qs3)).

core_cut_off_from_everyone_test() ->
    Names = [c1, c2, c3, p1, p2],
    {Qs0, Now0} = cluster(Names),
    Cut = (all_see(Names -- [c1]))#{c1 => [c1]},
    %% c1 hears nobody; the others hear each other (c1 has no heartbeats to
    %% give: leave it out of their lists).
    Sees = maps:map(fun(c1, V) -> V; (_, V) -> V -- [c1] end, Cut),
    {Qs1, Now1} = rounds(Qs0, Sees, Now0, 1),
    ?assertEqual([c2, c3, p1, p2], has(Qs1)),
    %% Long after: c1 still refuses; the others shrank their voters to
    %% themselves, and c1 did not.
    {Qs2, Now2} = rounds(Qs1, Sees, Now1, 40),
    ?assertEqual([c2, c3, p1, p2], has(Qs2)),
    ?assertEqual(live([c2, c3, p1, p2]), ?Q:voters(maps:get(c2, Qs2))),
    ?assertEqual(live(Names), ?Q:voters(maps:get(c1, Qs2))),
    %% Healed: c1 counts all of its voters live again, and is admitted back.
    {Qs3, _} = rounds(Qs2, all_see(Names), Now2, 2),
    ?assertEqual(Names, has(Qs3)),
    ?assertEqual(live(Names), ?Q:voters(maps:get(c2, Qs3))).

minority_side_losing_members_one_by_one_test() ->
    %% {c1, p1} | {c2, c3, p2}, the minority noticing its losses a tick
    %% apart: it must not follow them down.
    Names = [c1, c2, c3, p1, p2],
    {Qs0, Now0} = cluster(Names),
    Minority = [c1, p1],
    Majority = [c2, c3, p2],
    Step = fun(Gone) ->
                   maps:from_list([{N, Minority ++ (Majority -- Gone)} || N <- Minority] ++
                                  [{N, Majority} || N <- Majority])
           end,
    {Qs1, Now1} = rounds(Qs0, Step([c2]), Now0, 1),
    ?assertEqual(Names, has(Qs1)),   % each side still sees three of five
    {Qs2, Now2} = rounds(Qs1, Step([c2, c3]), Now1, 1),
    {Qs3, _} = rounds(Qs2, Step(Majority), Now2, 40),
    ?assertEqual(Majority, has(Qs3)).

failures_far_apart_are_followed_down_test() ->
    Names = [c1, c2, c3],
    {Qs0, Now0} = cluster(Names),
    {Qs1, Now1} = rounds(maps:remove(c3, Qs0), all_see([c1, c2]), Now0, 20),
    ?assertEqual([c1, c2], has(Qs1)),
    ?assertEqual(live([c1, c2]), ?Q:voters(maps:get(c1, Qs1))),
    %% Then c2 fails: c1 is half of {c1, c2} and the smaller core.
    {Qs2, _} = rounds(maps:remove(c2, Qs1), all_see([c1]), Now1, 3),
    ?assertEqual([c1], has(Qs2)).

tie_goes_to_the_smallest_core_test() ->
    {Qs0, Now0} = cluster([c1, c2]),
    Split = #{c1 => [c1], c2 => [c2]},
    {Qs1, _} = rounds(Qs0, Split, Now0, 30),
    ?assertEqual([c1], has(Qs1)),
    ?assertEqual(c1, ?Q:tiebreaker(live([p1, c2, c1]))),
    ?assertEqual(p1, ?Q:tiebreaker(live([p2, p1]))).

halves_with_a_proxy_test() ->
    %% {c1, p1} | {c2, p2}: the side of c1 serves, the other does not.
    {Qs0, Now0} = cluster([c1, c2, p1, p2]),
    Split = #{c1 => [c1, p1], p1 => [c1, p1], c2 => [c2, p2], p2 => [c2, p2]},
    {Qs1, _} = rounds(Qs0, Split, Now0, 30),
    ?assertEqual([c1, p1], has(Qs1)).

leaving_on_purpose_test() ->
    {Qs0, Now0} = cluster([c1, c2]),
    %% c1 stops on purpose: c2 forgets it and keeps the quorum alone.
    C2 = ?Q:forget(maps:get(c2, Qs0), c1),
    {Qs1, _} = rounds(#{c2 => C2}, #{c2 => [c2]}, Now0, 3),
    ?assertEqual([c2], has(Qs1)).

cut_off_nodes_do_not_join_up_test() ->
    %% c3 is cut off alone; 10 s later c2 and p2 are cut off from c1 and p1
    %% but reach c3: c3's old voters would make 3 of 5 with them, while c1
    %% and p1 are half of the majority's voters with the tiebreaker.  Only
    %% one side may serve: c1's.
    Names = [c1, c2, c3, p1, p2],
    {Qs0, Now0} = cluster(Names),
    First = (all_see(Names -- [c3]))#{c3 => [c3]},
    {Qs1, Now1} = rounds(Qs0, First, Now0, 50),
    ?assertEqual([c1, c2, p1, p2], has(Qs1)),
    ?assertEqual(live([c1, c2, p1, p2]), ?Q:voters(maps:get(c1, Qs1))),
    Second = #{c1 => [c1, p1], p1 => [c1, p1], c2 => [c2, c3, p2], p2 => [c2, c3, p2],
               c3 => [c2, c3, p2]},
    {Qs2, _} = rounds(Qs1, Second, Now1, 50),
    ?assertEqual([c1, p1], has(Qs2)).

%% The cases below were found in review of the first version, which shrank
%% and grew each node's voters on what it alone heard.

partial_cut_then_isolation_test() ->
    %% c1-c2 cut for longer than the settle time while p1 reaches both;
    %% then p1-c2 too: c2 is alone and must not serve.
    {Qs0, N0} = cluster([c1, c2, p1]),
    Step1 = #{c1 => [c1, p1], c2 => [c2, p1], p1 => [c1, c2, p1]},
    {Qs1, N1} = rounds(Qs0, Step1, N0, 25),
    ?assertEqual([c1, c2, p1], has(Qs1)),
    Step2 = #{c1 => [c1, p1], c2 => [c2], p1 => [c1, p1]},
    {Qs2, _} = rounds(Qs1, Step2, N1, 25),
    ?assertEqual([c1, p1], has(Qs2)).

partial_cut_then_split_of_five_test() ->
    Names = [c1, c2, c3, p1, p2],
    {Qs0, N0} = cluster(Names),
    S1 = (all_see(Names))#{c1 => [c1, c2, p1, p2], c3 => [c2, c3, p1, p2]},
    {Qs1, N1} = rounds(Qs0, S1, N0, 25),
    S2 = #{c1 => [c1, c2], c2 => [c1, c2], c3 => [c3, p1, p2], p1 => [c3, p1, p2],
           p2 => [c3, p1, p2]},
    {Qs2, _} = rounds(Qs1, S2, N1, 25),
    ?assertEqual([c3, p1, p2], has(Qs2)).

growth_heard_by_one_side_test() ->
    %% c3 joins, heard by c1 only so far; then {c1, c3} | {c2, p1}.
    {Qs0, N0} = cluster([c1, c2, p1]),
    Qs1 = Qs0#{c3 => ?Q:new(c3, core, true, N0 + 500)},
    S1 = #{c1 => [c1, c2, p1, c3], c2 => [c1, c2, p1], p1 => [c1, c2, p1], c3 => [c1, c3]},
    {Qs2, N2} = rounds(Qs1, S1, N0, 3),
    ?assertEqual(live([c1, c2, p1]), ?Q:voters(maps:get(c1, Qs2))),
    S2 = #{c1 => [c1, c3], c3 => [c1, c3], c2 => [c2, p1], p1 => [c2, p1]},
    {Qs3, _} = rounds(Qs2, S2, N2, 3),
    ?assertEqual([c2, p1], has(Qs3)).

restart_on_the_minority_side_test() ->
    %% {c1, p1} | {c2, c3, p2}; p1 restarts on the minority side: it must
    %% not form a cluster with c1.
    Names = [c1, c2, c3, p1, p2],
    {Qs0, N0} = cluster(Names),
    Cut = #{c1 => [c1, p1], p1 => [c1, p1], c2 => [c2, c3, p2], c3 => [c2, c3, p2],
            p2 => [c2, c3, p2]},
    {Qs1, N1} = rounds(Qs0, Cut, N0, 30),
    ?assertEqual([c2, c3, p2], has(Qs1)),
    Qs2 = Qs1#{p1 => ?Q:new(p1, proxy, true, N1 + 500)},
    {Qs3, _} = rounds(Qs2, Cut, N1, 10),
    ?assertEqual([c2, c3, p2], has(Qs3)).

new_pair_test() ->
    %% Two fresh nodes that name each other and hear nobody else: a new
    %% cluster of two.
    Qs0 = #{c1 => ?Q:new(c1, core, true, 500), c2 => ?Q:new(c2, core, true, 500)},
    {Qs1, _} = rounds(Qs0, all_see([c1, c2]), 0, 2),
    ?assertEqual([c1, c2], has(Qs1)).

two_hosts_one_lost_test() ->
    %% The documented limit: half of the voters lost at once, without the
    %% smallest core: the rest has no quorum.
    {Qs0, N0} = cluster([c1, c2, p1, p2]),
    {Qs1, _} = rounds(maps:without([c1, p1], Qs0), all_see([c2, p2]), N0, 50),
    ?assertEqual([], has(Qs1)).

staggered_start_test() ->
    %% Every node names another and they start a tick or two apart, each
    %% forming voters from whom it hears at first: they converge.
    Names = [c1, c2, p1, p2],
    Qs0 = maps:from_list([{N, ?Q:new(N, role(N), true, 500)} || N <- Names]),
    {Qs1, N1} = rounds(maps:with([p2], Qs0), #{p2 => [p2]}, 0, 3),
    {Qs2, N2} = rounds(Qs1#{c1 => maps:get(c1, Qs0)}, all_see([p2, c1]), N1, 1),
    {Qs3, N3} = rounds(Qs2#{c2 => maps:get(c2, Qs0)}, all_see([p2, c1, c2]), N2, 1),
    {Qs4, _} = rounds(Qs3#{p1 => maps:get(p1, Qs0)}, all_see(Names), N3, 6),
    ?assertEqual(Names -- [], lists:sort(has(Qs4))).
