%% @doc Moves of topics between cores with nothing lost and nothing
%% delivered twice (docs/cluster.md, "Moves"): the decisions, as pure
%% functions; kraken_cluster carries them out.
%%
%% A view is `{Epoch, Phase, Leader, Owners, Alt}': the cores that own
%% topics (Owners: where entries are published) and, during a move, the
%% other owner set (Alt), where every node holding a topic subscribes too.
%% Every node applies the newest view it has heard of (views are ordered by
%% `{Epoch, Phase, Leader}', phases prepare < switch < stable). One node, the
%% leader, makes new views, and only once every live member applied its
%% current one and its engine synced (every link answered a `version' sent
%% after the change). A move from owners O to N:
%%
%%   prepare `{E, prepare, L, O, N}': everyone subscribes at the owners under
%%     N too, and publishes under O;
%%   switch `{E, switch, L, N, O}': everyone publishes under N, still
%%     subscribed under both; synced means the entries forwarded under O were
%%     delivered;
%%   stable `{E, stable, L, N, N}': everyone unsubscribes under O.
%%
%% A prepare whose target is no longer the wanted one (a core joined, left or
%% started draining meanwhile), or that takes longer than ?PHASE_TIMEOUT,
%% is aborted (`{E+1, stable, L, O, O}'); a switch that takes longer is
%% completed anyway (a member that did not sync is a failure).
-module(kraken_cluster_move).

-export([newer/2, leader/2, next/5, lead/6, sees_owners/2, engine_sets/3, engine_sets/4,
         engine_missing/3, desired/2, drained/3]).

-define(PHASE_TIMEOUT, 5000).

-type name() :: binary().
-type view() :: {non_neg_integer(), prepare | switch | stable, name(), [name()], [name()]}.
-export_type([view/0]).

%% @doc Whether view A is newer than view B (undefined: none yet).
-spec newer(view() | undefined, view() | undefined) -> boolean().
newer(undefined, _) -> false;
newer(_, undefined) -> true;
newer(A, B) -> key(A) > key(B).

key({E, Phase, Leader, _, _}) -> {E, rank(Phase), Leader}.

rank(prepare) -> 1;
rank(switch) -> 2;
rank(stable) -> 3.

%% @doc The leader under a view, given the live cores: the smallest live
%% core among its owners (either set); else the smallest live core.
-spec leader(view() | undefined, [name()]) -> name() | undefined.
leader(undefined, Live) ->
    first(Live);
leader({_, _, _, Owners, Alt}, Live) ->
    case [N || N <- lists:usort(Owners ++ Alt), lists:member(N, Live)] of
        [] -> first(Live);
        [N | _] -> N
    end.

first([]) -> undefined;
first(L) -> hd(lists:sort(L)).

%% @doc The owners wanted: the live cores that are not draining (all the
%% live cores if every one is).
-spec desired([name()], [name()]) -> [name()].
desired(Live, Draining) ->
    case lists:usort(Live) -- Draining of
        [] -> lists:usort(Live);
        D -> D
    end.

%% @doc The leader's next view, or `keep'. Current: its view; Others: the
%% views the other live members report, `{View, Synced}'; Synced: its own
%% engine synced; Desired: desired/2; Age: ms since its view began.
-spec next(name(), view() | undefined, [{view() | undefined, boolean()}], boolean(),
           {[name()], non_neg_integer()}) -> keep | {view(), atom()}.
next(Self, undefined, Others, _Synced, {Desired, _Age}) ->
    case [V || {V, _} <- Others, V =/= undefined] of
        [] -> {{1, stable, Self, Desired, Desired}, bootstrap};
        _ -> keep   % adopt theirs first
    end;
next(Self, View = {E, Phase, _, Owners, Alt}, Others, Synced, {Desired, Age}) ->
    All = Synced andalso lists:all(fun({V, S}) -> S andalso V =:= View end, Others),
    case Phase of
        stable when Desired =/= Owners ->
            %% No barrier needed here: a member still applying the last
            %% release subscribes under the new owners as well as anyone.
            {{E + 1, prepare, Self, Owners, Desired}, prepare};
        stable ->
            keep;
        prepare when Alt =/= Desired; not All andalso Age > ?PHASE_TIMEOUT ->
            {{E + 1, stable, Self, Owners, Owners}, abort};
        prepare when All ->
            {{E, switch, Self, Alt, Owners}, switch};
        switch when All; Age > ?PHASE_TIMEOUT ->
            {{E, stable, Self, Owners, Owners}, release};
        _ ->
            keep
    end.

%% @doc The step of a core that may lead (it has the quorum, and is not in
%% its quiet time after a start or a resume): `keep' when it is not the
%% leader (leader/2) or no new view is due (next/5); else the next view,
%% why (next/5), the nodes of the move it leads and those of them waited
%% for although silent. Me: its name; `{View, Synced, Age}': its view,
%% whether its engine synced on it, and ms since the view began; Cores: the
%% cores it counts, `{Name, Draining}'; Movers: the live members a move
%% waits for, `{Node, View, Synced}' as they report; MoveNodes: the nodes
%% of the move it leads; Connected: the nodes still connected.
-spec lead(name(), {view() | undefined, boolean(), integer()}, [{name(), boolean()}],
           [{node(), view() | undefined, boolean()}], [node()], [node()]) ->
          keep | {view(), atom(), [node()], [node()]}.
lead(Me, {View, Synced, Age}, Cores, Movers, MoveNodes, Connected) ->
    case leader(View, [N || {N, _} <- Cores]) =:= Me of
        false ->
            keep;
        true ->
            LiveNodes = [N || {N, _, _} <- Movers],
            %% A member of this move that went silent but whose node is still
            %% connected is waited for (up to the phase's timeout): it may only
            %% be slow, and still publish under the old view.
            Silent = [N || N <- MoveNodes, not lists:member(N, LiveNodes),
                           lists:member(N, Connected)],
            Others = [{V, S} || {_, V, S} <- Movers] ++ [{undefined, false} || _ <- Silent],
            Desired = desired([N || {N, _} <- Cores], [N || {N, true} <- Cores]),
            case next(Me, View, Others, Synced, {Desired, Age}) of
                keep ->
                    keep;
                {New = {_, Phase, _, _, _}, Why} ->
                    Nodes = case Phase of
                                prepare -> LiveNodes;
                                switch -> MoveNodes;
                                stable -> []
                            end,
                    {New, Why, Nodes, Silent}
            end
    end.

%% @doc Whether a node that sees these cores live (names) sees every core a
%% move in progress moves topics to (the new owners: Alt while preparing,
%% Owners while switching). One that does not (a core that just joined is
%% not in its live set yet) is not synced on the view, whatever its engine
%% says: its engine has no link to that core, so its holders are not
%% subscribed there, and the move must not switch to it yet (the entries
%% entering there would miss them). A stable view asks nothing: it may
%% still name a core that failed (the engines' sets leave out the cores
%% that are not live).
-spec sees_owners(view() | undefined, [name()]) -> boolean().
sees_owners({_, Phase, _, Owners, Alt}, Live) when Phase =/= stable ->
    New = case Phase of prepare -> Alt; switch -> Owners end,
    lists:all(fun(N) -> lists:member(N, Live) end, New);
sees_owners(_, _) ->
    true.

%% @doc The owner sets to give the engine under a view, among the live
%% cores (names), the static upstreams always owning: `{Owners, Alt}'; when
%% no live core is among the view's owners (no view yet, or they all left),
%% every live core owns.
-spec engine_sets(view() | undefined, [name()], [name()]) -> {[name()], [name()]}.
engine_sets(View, Live, Upstreams) ->
    engine_sets(View, Live, [], Upstreams).

%% @doc The same, Seen being the cores that live members report live: when
%% none of the view's owners is live here but one is seen (missing here,
%% engine_missing/3), the live cores do not take its topics: no core owns
%% (the engine refuses them).  A node that comes back from the minority
%% side may hear a proxy before the core that now owns everything: it must
%% not take every topic for itself meanwhile.
-spec engine_sets(view() | undefined, [name()], [name()], [name()]) -> {[name()], [name()]}.
engine_sets(undefined, Live, _Seen, Upstreams) ->
    {lists:usort(Live ++ Upstreams), lists:usort(Live ++ Upstreams)};
engine_sets({_, _, _, Owners, Alt}, Live, Seen, Upstreams) ->
    O = case lists:any(fun(N) -> lists:member(N, Seen) end, Owners) of
            true -> [N || N <- lists:usort(Owners), lists:member(N, Live)];
            false -> live_or_all(Owners, Live)
        end,
    A = case [N || N <- Alt, lists:member(N, Live)] of
            [] -> O;
            L -> lists:usort(L)
        end,
    {lists:usort(O ++ Upstreams), lists:usort(A ++ Upstreams)}.

%% @doc The owners under a view that are missing here: not live here but
%% live for another live member (Seen: the cores those report live), or any
%% not live here when no core is (a node cut off from every core). The
%% engine treats their topics as unavailable (docs/cluster.md,
%% "Partitions"): entries of them may enter the cluster at a core this node
%% cannot hear. A core that nobody sees any more is not missing: it failed,
%% and its topics go to the others at once. `{MissingOwners, MissingAlt}';
%% no alt during a prepare (no entry enters the cluster under the next
%% owners before the switch).
-spec engine_missing(view() | undefined, [name()], [name()]) -> {[name()], [name()]}.
engine_missing(undefined, _Live, _Seen) ->
    {[], []};
engine_missing({_, Phase, _, Owners, Alt}, Live, Seen) ->
    Missing = fun(Names) ->
                      lists:usort([N || N <- Names, not lists:member(N, Live),
                                        Live =:= [] orelse lists:member(N, Seen)])
              end,
    {Missing(Owners), case Phase of prepare -> []; _ -> Missing(Alt) end}.

live_or_all(Names, Live) ->
    case [N || N <- Names, lists:member(N, Live)] of
        [] -> lists:usort(Live);
        L -> lists:usort(L)
    end.

%% @doc Whether a core (Self) is drained: a stable view in which it owns
%% nothing, that every live member applied and synced.
-spec drained(name(), {view() | undefined, boolean()}, [{view() | undefined, boolean()}]) ->
          boolean().
drained(Self, {View = {_, stable, _, Owners, Alt}, true}, Others) ->
    not lists:member(Self, Owners ++ Alt) andalso
        lists:all(fun({V, S}) -> S andalso V =:= View end, Others);
drained(_, _, _) ->
    false.
