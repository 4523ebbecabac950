%% Scenarios found by a second review of the quorum rules (commit 431791b,
%% kraken_cluster_quorum), each of which broke them, now asserting the safe
%% outcome: never two cores on different sides of a cut with the quorum at
%% once, and a connected cluster whose crashed nodes came back has the
%% quorum again.  Same harness as kraken_cluster_quorum_tests (each round
%% every node steps with the previous round's reports of the nodes it
%% hears).  The review's fifth case (a stop on purpose heard by some
%% members only, then a restart within 3.2 s under a partial cut) is a
%% documented limit (docs/cluster.md, "Quorum").
-module(kraken_cluster_quorum_review_tests).

-include_lib("eunit/include/eunit.hrl").

-import(kraken_cluster_quorum_tests, [role/1, rounds/4, all_see/1, has/1, cluster/1]).

-define(Q, kraken_cluster_quorum).

%% Symmetric links: [{A, B}] => node => the nodes it hears (itself too).
links(Names, Pairs) ->
    maps:from_list([{N, lists:usort([N] ++ [B || {A, B} <- Pairs, A =:= N] ++
                                        [A || {A, B} <- Pairs, B =:= N])}
                    || N <- Names]).

%% Whether a core of each side has the quorum.
split(Qs, A, B) ->
    Has = has(Qs),
    lists:any(fun(N) -> role(N) =:= core andalso lists:member(N, Has) end, A) andalso
        lists:any(fun(N) -> role(N) =:= core andalso lists:member(N, Has) end, B).

%% F1. Shrinking looks one hop only.  A partial cut makes a chain
%% c1,c2 - p1 - p2 - c3 for longer than the settle time: c1 and c2 hear
%% nobody who hears c3 and drop it (p1, p2 and c3 keep all five, p1 and p2
%% with the quorum).  The cut then becomes {c1, c2} | {p1, p2, c3}: c1 and
%% c2 are half of their four voters with the tiebreaker, p1, p2 and c3 three
%% of their five: two cores, c1 and c3, serve on either side.
chain_shrink_then_widen_test() ->
    Names = [c1, c2, c3, p1, p2],
    {Qs0, N0} = cluster(Names),
    Chain = links(Names, [{c1, c2}, {c1, p1}, {c2, p1}, {p1, p2}, {p2, c3}]),
    {Qs1, N1} = rounds(Qs0, Chain, N0, 25),
    Cut = links(Names, [{c1, c2}, {p1, p2}, {p2, c3}, {p1, c3}]),
    {Qs2, N2} = rounds(Qs1, Cut, N1, 3),
    ?assertNot(split(Qs2, [c1, c2], [c3, p1, p2])),
    {Qs3, _} = rounds(Qs2, Cut, N2, 40),
    ?assertNot(split(Qs3, [c1, c2], [c3, p1, p2])).

%% F2. Growth looks one hop only.  c4 joins while a partial cut makes
%% c1, c2 - p1 - c3, p2: every member c1 and c2 hear (each other, p1) hears
%% c4, so they make it a voter (six), and c4 takes their list; p1 hears c3
%% and p2, which do not hear c4, so p1, c3 and p2 keep five.  The cut
%% becomes {c1, c2, c4} | {c3, p1, p2}: three of six with the tiebreaker
%% c1 on one side, three of five on the other.
chain_growth_then_cut_test() ->
    Names = [c1, c2, c3, p1, p2],
    {Qs0, N0} = cluster(Names),
    Qs1 = Qs0#{c4 => ?Q:new(c4, core, true, N0 + 500)},
    All = [c4 | Names],
    Partial = links(All, [{c1, c2}, {c1, p1}, {c2, p1}, {c1, c4}, {c2, c4}, {p1, c4},
                          {p1, c3}, {p1, p2}, {c3, p2}]),
    {Qs2, N2} = rounds(Qs1, Partial, N0, 5),
    Cut = links(All, [{c1, c2}, {c1, c4}, {c2, c4}, {c3, p1}, {c3, p2}, {p1, p2}]),
    {Qs3, N3} = rounds(Qs2, Cut, N2, 3),
    ?assertNot(split(Qs3, [c1, c2, c4], [c3, p1, p2])),
    {Qs4, _} = rounds(Qs3, Cut, N3, 40),
    ?assertNot(split(Qs4, [c1, c2, c4], [c3, p1, p2])).

%% F3. Nodes started together under a partial cut (c1 - p1 - c2, c1-c2
%% cut): each takes the members it hears as voters, c1 {c1, p1}, c2
%% {c2, p1}, and each is the tiebreaker of its own set: both have the
%% quorum at the first step, and they never agree on the voters while the
%% cut lasts.  When p1-c2 is cut too, c2 alone is half of {c2, p1} with the
%% tiebreaker while c1 and p1 are all of {c1, p1}.
new_cluster_under_partial_cut_test() ->
    Names = [c1, c2, p1],
    Qs0 = maps:from_list([{N, ?Q:new(N, role(N), true, 500)} || N <- Names]),
    Partial = links(Names, [{c1, p1}, {c2, p1}]),
    {Qs1, N1} = rounds(Qs0, Partial, 0, 1),
    ?assertNot(split(Qs1, [c1], [c2])),
    {Qs2, _} = rounds(Qs1, Partial, N1, 25),
    ?assertNot(split(Qs2, [c1], [c2])).
    %% (Cut off from p1 as well, c2, which never was in a cluster, hears
    %% nobody and forms one of its own: the documented limit of a node
    %% started while it hears no member.)

%% F4. Liveness: a node restarted after a crash (no `leaving': a VM or
%% host restarted by its supervisor) reports no voters and that it never
%% had a quorum.  The others do not count it (its voters do not list them)
%% and it waits for them (they were in a cluster): when the nodes that
%% crashed were half of the voters (without the tiebreaker) or more, and
%% stayed down past the deadline (the others lost the quorum meanwhile),
%% nobody has the quorum ever again once they are back, all connected.
%% docs/cluster.md promises "until enough come back".
restart_of_the_tiebreaker_of_two_test() ->
    {Qs0, N0} = cluster([c1, c2]),
    {Qs1, N1} = rounds(maps:remove(c1, Qs0), #{c2 => [c2]}, N0, 10),   % c1 down 2 s
    ?assertEqual([], has(Qs1)),
    Qs2 = Qs1#{c1 => ?Q:new(c1, core, true, N1 + 500)},
    {Qs3, _} = rounds(Qs2, all_see([c1, c2]), N1, 10),
    ?assertEqual([c1, c2], has(Qs3)).

two_of_three_restarted_test() ->
    {Qs0, N0} = cluster([c1, c2, c3]),
    {Qs1, N1} = rounds(maps:without([c1, c2], Qs0), #{c3 => [c3]}, N0, 10),
    ?assertEqual([], has(Qs1)),
    Qs2 = Qs1#{c1 => ?Q:new(c1, core, true, N1 + 500),
               c2 => ?Q:new(c2, core, true, N1 + 500)},
    {Qs3, _} = rounds(Qs2, all_see([c1, c2, c3]), N1, 10),
    ?assertEqual([c1, c2, c3], has(Qs3)).

%% F4 again, the documented limit "two hosts of a core and a proxy each,
%% the one with the smaller core gone": it is said to last until enough
%% come back, but the host back (c1 and p1 restarted) changes nothing.
two_hosts_one_lost_and_back_test() ->
    {Qs0, N0} = cluster([c1, c2, p1, p2]),
    {Qs1, N1} = rounds(maps:without([c1, p1], Qs0), all_see([c2, p2]), N0, 10),
    ?assertEqual([], has(Qs1)),
    Qs2 = Qs1#{c1 => ?Q:new(c1, core, true, N1 + 500),
               p1 => ?Q:new(p1, proxy, true, N1 + 500)},
    {Qs3, _} = rounds(Qs2, all_see([c1, c2, p1, p2]), N1, 10),
    ?assertEqual([c1, c2, p1, p2], has(Qs3)).

%% F6. Growth without the voters that are cut off, under clean cuts only
%% (no partial cut: a partition that moves, found by a random search).
%% {c1, c2} | {c3, p1, p2} for 5 s: the majority drops c1 and c2 (voters
%% {c3, p1, p2}).  The cut moves to {c1, c3, p1} | {c2, p2} for one tick:
%% c3 and p1 have two of three and every member they hear hears c1, so they
%% grow to {c1, c3, p1, p2}, of which c1, a smaller core, is the new
%% tiebreaker; p2 does not hear c1 and keeps {c3, p1, p2}.  The cut moves
%% to {c1, p1} | {c2, c3, p2}: c1 and p1 are half of their four with the
%% tiebreaker, c3 and p2 two of p2's three (c3 takes p2's list).
moving_partition_test() ->
    Names = [c1, c2, c3, p1, p2],
    {Qs0, N0} = cluster(Names),
    A = links(Names, [{c1, c2}, {c3, p1}, {c3, p2}, {p1, p2}]),
    {Qs1, N1} = rounds(Qs0, A, N0, 25),
    ?assertEqual([c3, p1, p2], has(Qs1)),
    B = links(Names, [{c1, c3}, {c1, p1}, {c3, p1}, {c2, p2}]),
    {Qs2, N2} = rounds(Qs1, B, N1, 1),
    ?assertNot(split(Qs2, [c1, c3, p1], [c2, p2])),
    C = links(Names, [{c1, p1}, {c2, c3}, {c2, p2}, {c3, p2}]),
    {Qs3, N3} = rounds(Qs2, C, N2, 3),
    ?assertNot(split(Qs3, [c1, p1], [c2, c3, p2])),
    {Qs4, _} = rounds(Qs3, C, N3, 25),
    ?assertNot(split(Qs4, [c1, p1], [c2, c3, p2])),
    %% healed: everyone again
    {Qs5, _} = rounds(Qs4, all_see(Names), N3 + 5000, 25),
    ?assertEqual(Names, has(Qs5)).
