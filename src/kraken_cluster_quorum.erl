%% @doc Whether this node is on the majority side of the cluster: the
%% quorum that keeps a node cut off from the others from serving topics
%% the others moved away (split brain; docs/cluster.md, "Quorum", and "Partitions", "c1 cut
%% off from p1 and c2").
%%
%% A pure data structure; kraken_cluster steps it on every update with the
%% members it hears and what their heartbeats say.
%%
%% The voters are the members (cores and proxies, this node among them)
%% this node last agreed on.  A node has the quorum while it hears more
%% than half of its voters, or exactly half when the smallest core among
%% the voters is one of them (so a cluster of two, or a partition into
%% equal halves, still has one side serving).  A member heard counts only
%% when its own voters list this node: a node that was cut off keeps the
%% voters it had, and must not make a majority of them with nodes cut off
%% later, whom the majority side dropped meanwhile (nor with members that
%% dropped it).  What changes the voters:
%%
%%   - growth: while a node has the quorum, every live member is a voter at
%%     once (a larger set only makes the quorum harder to have);
%%   - shrinking: the voters become the live members once those stayed the
%%     same for ?SETTLE ms with the quorum held.  Failures detected within
%%     that time of each other count as one, so a node cut off from the
%%     others cannot reach a quorum by losing them one heartbeat deadline
%%     after the other;
%%   - a member that stops on purpose says so (`leaving' in its last
%%     heartbeat): it stops being a voter at once (forget/2);
%%   - joining: a node started with nodes to join has no voters until a
%%     member with the quorum lists it among its own (it takes that list),
%%     or, when no member it hears has a quorum (a new cluster, every node
%%     starting), it forms one with the members it hears; alone when it
%%     hears nobody at all once its start-up wait is over (the first node
%%     of a cluster, started before the nodes it names).
%%
%% Limits (docs/cluster.md): a node started, or restarted, while it hears
%% no member forms a cluster of its own; a majority that is lost in steps more than ?SETTLE
%% ms apart is followed down (the survivors keep serving: availability
%% over a partition of the last few); a cluster of two with the smaller
%% core gone leaves the other without a quorum (a third member, even a
%% proxy, avoids it).
-module(kraken_cluster_quorum).

-export([new/4, step/4, forget/2, has/1, voters/1, tiebreaker/1]).
-export_type([quorum/0]).

-define(SETTLE, 3200).

-type role() :: core | proxy.
-type members() :: #{node() => role()}.

-record(quorum, {self :: node(),
                 joins :: boolean(),          % given nodes to join
                 alone_at = 0 :: integer(),   % from when it may form a cluster alone
                 voters = #{} :: members(),
                 has = false :: boolean(),
                 live = [] :: [node()],       % the live members at the last step
                 since = 0 :: integer()}).    % since when they are the same

-opaque quorum() :: #quorum{}.

%% @doc A node's quorum at its start: a node given no node to join is a
%% cluster of its own (it has the quorum); one that joins has no voters
%% yet, and forms a cluster alone only if it hears nobody from AloneAt (ms,
%% the time of step/4) on.
-spec new(node(), role(), boolean(), integer()) -> quorum().
new(Self, Role, false, _AloneAt) ->
    #quorum{self = Self, joins = false, voters = #{Self => Role}, has = true};
new(Self, _Role, true, AloneAt) ->
    #quorum{self = Self, joins = true, alone_at = AloneAt}.

%% @doc One step at time Now (ms): Live are the members heard within the
%% deadline, this node among them; Heard, for each live member but this
%% node, the voters its heartbeat carries (undefined when it does not
%% count them: a proxy below parents, a release before the quorum) and
%% whether it has the quorum.
-spec step(quorum(), members(), #{node() => {members() | undefined, boolean()}}, integer()) ->
          quorum().
step(Q0, Live, Heard, Now) ->
    Q1 = admit(track(Q0, Live, Now), Live, Heard, Now),
    Has = counts(Q1, Live, Heard),
    Q2 = Q1#quorum{has = Has},
    case Has of
        true -> settle(Q2#quorum{voters = maps:merge(Q2#quorum.voters, Live)}, Live, Now);
        false -> Q2
    end.

%% @doc A member that stopped on purpose is no longer a voter.
-spec forget(quorum(), node()) -> quorum().
forget(Q = #quorum{voters = V}, Node) ->
    Q#quorum{voters = maps:remove(Node, V)}.

-spec has(quorum()) -> boolean().
has(#quorum{has = Has}) ->
    Has.

-spec voters(quorum()) -> members().
voters(#quorum{voters = V}) ->
    V.

%% @doc The voter whose side wins a tie: the smallest core (the smallest
%% member when no voter is a core).
-spec tiebreaker(members()) -> node() | undefined.
tiebreaker(Voters) when map_size(Voters) =:= 0 ->
    undefined;
tiebreaker(Voters) ->
    case lists:sort([N || {N, core} <- maps:to_list(Voters)]) of
        [T | _] -> T;
        [] -> lists:min(maps:keys(Voters))
    end.

%%% Internal functions

track(Q = #quorum{live = Names}, Live, Now) ->
    case lists:sort(maps:keys(Live)) of
        Names -> Q;
        New -> Q#quorum{live = New, since = Now}
    end.

%% Without the quorum: the voters of a member that has it and counts this
%% node among them; for a node that never had voters, when no member it
%% hears has a quorum, the live members (itself alone only if it joins
%% nobody, or hears nobody once its start-up wait is over).
admit(Q = #quorum{voters = V}, Live, Heard, Now) ->
    case counts(Q, Live, Heard) of
        true ->
            Q;
        false ->
            Self = Q#quorum.self,
            Theirs = [B || {B, true} <- maps:values(Heard), is_map(B), maps:is_key(Self, B)],
            AnyHas = lists:keymember(true, 2, maps:values(Heard)),
            case Theirs of
                [B | _] ->
                    Q#quorum{voters = B};
                [] when map_size(V) =:= 0, not AnyHas,
                        not Q#quorum.joins orelse map_size(Live) >= 2 orelse
                        Now >= Q#quorum.alone_at ->
                    Q#quorum{voters = Live};
                [] ->
                    Q
            end
    end.

counts(#quorum{voters = Voters}, _Live, _Heard) when map_size(Voters) =:= 0 ->
    false;
counts(#quorum{self = Self, voters = Voters}, Live, Heard) ->
    In = [N || N <- maps:keys(Voters), maps:is_key(N, Live),
               N =:= Self orelse lists_me(maps:get(N, Heard, {undefined, false}), Self)],
    N = map_size(Voters),
    2 * length(In) > N orelse
        (2 * length(In) =:= N andalso lists:member(tiebreaker(Voters), In)).

lists_me({undefined, _}, _Self) -> true;
lists_me({Voters, _}, Self) -> maps:is_key(Self, Voters).

%% The voters shrink to the live members once these stayed the same for
%% ?SETTLE ms.
settle(Q = #quorum{since = Since}, Live, Now) when Now - Since >= ?SETTLE ->
    Q#quorum{voters = Live};
settle(Q, _Live, _Now) ->
    Q.
