%% @doc Who is live in the cluster and what the live members say, from
%% their heartbeats (docs/cluster.md, "Membership and failure detection"):
%% pure functions; kraken_cluster keeps the members, sends and receives the
%% heartbeats and acts on what these say.
%%
%% The members are the kraken_cluster processes of the other nodes heard
%% from, each with the Info of its last heartbeat and when that came (ms,
%% monotonic): `#{Pid => {Info, Heard}}' (members()). A member is live
%% while heard within ?DEADLINE ms (kraken_cluster.hrl), whatever
%% distribution thinks. Most functions here take the live members' Infos
%% (live/2): a map with the node's `node', `role', `parents', `host' and
%% `port', and what heartbeat/3 adds: its view and whether its engine
%% synced on it, whether it drains, the cores it counts live, and its side
%% of the quorum (kraken_cluster_quorum). A heartbeat of an older release
%% may lack the later keys: each has a default here.
-module(kraken_cluster_live).

-export([live/2, split/2, shift/3, heartbeat/3, counted/1, movers/1, cores/2, seen_names/1,
         seen_cores/3, hears/1, reports/1, quorum_input/2]).
-export_type([members/0]).

-include("kraken_cluster.hrl").

-type info() :: map().
-type members() :: #{pid() => {info(), integer()}}.
-type name() :: binary().

%% @doc The Infos of the members heard from within the deadline at Now.
-spec live(members(), integer()) -> [info()].
live(Members, Now) ->
    [I || {I, H} <- maps:values(Members), Now - H =< ?DEADLINE].

%% @doc The members still live at Now, and those not (`{Info, Heard}').
-spec split(members(), integer()) -> {members(), [{info(), integer()}]}.
split(Members, Now) ->
    {Live, Dead} = maps:fold(fun(P, M = {_, H}, {L, D}) when Now - H =< ?DEADLINE ->
                                     {L#{P => M}, D};
                                (_, M, {L, D}) ->
                                     {L, [M | D]}
                             end, {#{}, []}, Members),
    {Live, lists:reverse(Dead)}.

%% @doc After this node did not run for Gap ms (a stop): the members as if
%% heard Gap ms later, never after Now. The others were not silent
%% meanwhile, this node did not listen: a member that really died meanwhile
%% goes after the deadline, or at its nodedown.
-spec shift(members(), integer(), integer()) -> members().
shift(Members, Gap, Now) ->
    maps:map(fun(_, {I, H}) -> {I, min(Now, H + Gap)} end, Members).

%% @doc The Info of this node's heartbeat: Mine (node, role, parents, host,
%% port) with Fields (its view, synced, draining, the live cores' names and
%% the members it hears: hears/1) and what its quorum says (undefined: a
%% proxy below parents, which is no voter).
-spec heartbeat(info(), kraken_cluster_quorum:quorum() | undefined, map()) -> info().
heartbeat(Mine, Quorum, Fields) ->
    {Voters, Has, Ever} = case Quorum of
                              undefined ->
                                  {undefined, false, false};
                              Q ->
                                  {kraken_cluster_quorum:voters(Q), kraken_cluster_quorum:has(Q),
                                   kraken_cluster_quorum:ever(Q)}
                          end,
    maps:merge(Mine, Fields#{voters => Voters, quorum => Has, in_cluster => Ever}).

%% @doc Whether a member's heartbeat says it has the quorum
%% (kraken_cluster_quorum): a core without it owns nothing for anyone. A
%% heartbeat of a release before the quorum does not say: counted.
-spec counted(info()) -> boolean().
counted(Info) ->
    maps:get(quorum, Info, true) =/= false.

%% @doc The live members a move waits for: not the proxies below other
%% proxies (their parents hold their topics at the cores), nor the members
%% without the quorum (they serve nothing; they apply the view they find
%% when they have it again).
-spec movers([info()]) -> [info()].
movers(Live) ->
    [I || I <- Live, maps:get(parents, I, []) =:= [], counted(I)].

%% @doc The live cores, this node among them if it is one (`{Role,
%% Draining}' of this node): `{Name, Draining}', sorted.
-spec cores({core | proxy, boolean()}, [info()]) -> [{name(), boolean()}].
cores({Role, Draining}, Live) ->
    lists:usort([{atom_to_binary(node()), Draining} || Role =:= core] ++
                    [{atom_to_binary(maps:get(node, I)), maps:get(draining, I, false)}
                     || I <- Live, maps:get(role, I) =:= core, counted(I)]).

%% @doc The cores that the live members report live in their heartbeats.
-spec seen_names([info()]) -> [name()].
seen_names(Live) ->
    lists:usort(lists:append([maps:get(live, I, []) || I <- Live, counted(I)])).

%% @doc The cores the leader counts: the live ones here (cores/2), and
%% those that a live member still sees (Seen: seen_names/1) among the
%% view's owners (`{Name, Draining}'). So when only the connection between
%% two cores is cut (a member reaches both), neither moves the other's
%% topics away, and each treats the other's topics as unavailable
%% (kraken_cluster_move:engine_missing/3; docs/cluster.md, "Partitions").
%% A core that failed is dropped by every member within a tick of each
%% other; one seen only by others is never moved in from here.
-spec seen_cores([{name(), boolean()}], [name()], kraken_cluster_move:view() | undefined) ->
          [{name(), boolean()}].
seen_cores(Live, Seen, View) ->
    Owners = case View of
                 {_, _, _, O, A} -> O ++ A;
                 undefined -> []
             end,
    lists:usort(Live ++ [{N, false} || N <- Seen, lists:member(N, Owners),
                                       not lists:keymember(N, 1, Live)]).

%% @doc The members this node hears, as its quorum counts them: not the
%% proxies below parents (kraken_cluster_quorum compares these lists).
-spec hears([info()]) -> [node()].
hears(Live) ->
    [maps:get(node, I) || I <- Live, maps:get(parents, I, []) =:= []].

%% @doc What members report of a view: `{View, Synced}' each
%% (kraken_cluster_move:next/5 and drained/3).
-spec reports([info()]) -> [{kraken_cluster_move:view() | undefined, boolean()}].
reports(Live) ->
    [{maps:get(view, I, undefined), maps:get(synced, I, false)} || I <- Live].

%% @doc What kraken_cluster_quorum:step/4 takes from the live members, this
%% node's Role aside: the members by role, this node among them, and what
%% each one's heartbeat says of the quorum. A proxy below parents is no
%% voter: its parents count for it.
-spec quorum_input(core | proxy, [info()]) ->
          {#{node() => core | proxy}, #{node() => {map() | undefined, boolean(),
                                                   [node()] | undefined, boolean()}}}.
quorum_input(Role, Live0) ->
    Live = [I || I <- Live0, maps:get(parents, I, []) =:= []],
    LiveMap = maps:from_list([{node(), Role} |
                              [{maps:get(node, I), maps:get(role, I)} || I <- Live]]),
    Heard = maps:from_list([{maps:get(node, I), {maps:get(voters, I, undefined),
                                                 maps:get(quorum, I, false),
                                                 maps:get(hears, I, undefined),
                                                 maps:get(in_cluster, I, false)}}
                            || I <- Live]),
    {LiveMap, Heard}.
