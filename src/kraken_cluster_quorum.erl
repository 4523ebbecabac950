%% @doc Whether this node is on the majority side of the cluster: the
%% quorum that keeps a node cut off from the others from serving topics
%% the others moved away (split brain; docs/cluster.md, "Quorum", and
%% "Partitions", "c1 cut off from p1 and c2").
%%
%% A pure data structure; kraken_cluster steps it on every update with the
%% members it hears (proxies below parents left out: their parents count
%% for them) and what their heartbeats say: their voters, whether they have
%% the quorum, and the members they hear.
%%
%% The voters are the members (cores and proxies, this node among them)
%% this node last agreed on.  A node has the quorum while it hears more
%% than half of its voters, or exactly half when the smallest core among
%% the voters is one of them (so a cluster of two, or a partition into
%% equal halves, still has one side serving).  A member heard counts only
%% when its own voters list this node: a node cut off keeps the voters it
%% had, and must not make a majority of them with nodes cut off later
%% that the majority side dropped meanwhile (nor with members that dropped
%% it).  The voters change only in ways every member agrees on:
%%
%%   - growth: while a node has the quorum and every voter counts here, a
%%     member it hears becomes a voter once every other member it hears
%%     reports hearing it too (so that the members grow together, not one
%%     side of a cut before the other);
%%   - shrinking: a voter that no member it hears reports hearing stops
%%     being one, once the live members stayed the same for ?SETTLE ms
%%     with the quorum held and every voter that stays counts here.  A voter cut from some members only (a
%%     partial cut: another member still hears it) stays one, so a node
%%     cannot shrink its voters to its own side of a partial cut and keep
%%     a quorum when the cut widens; failures noticed within ?SETTLE ms of
%%     each other count together;
%%   - a member that stops on purpose says so (`leaving' in its last
%%     heartbeat): it stops being a voter at once (forget/2);
%%   - joining: a node started with nodes to join has no quorum until a
%%     member with the quorum lists it among its own (it takes that list),
%%     or, if none has the quorum, one that had it once (a node restarted
%%     after a crash kept nothing: its peers remember its voters for it);
%%     or, when no member it hears ever had a quorum either (a new cluster,
%%     every node starting) and all hear the same members as it does, it
%%     takes the members it hears as voters (again at each step, until
%%     they make a quorum: nodes starting together converge once they hear
%%     each other);
%%     alone when it hears nobody at all once its start-up wait is over
%%     (the first node of a cluster, started before the nodes it names).
%%     A node restarted next to members that had a quorum once (on the
%%     minority side now) waits: they are an existing cluster.
%%
%% Limits (docs/cluster.md): a node started, or restarted, while it hears
%% no member forms a cluster of its own; losing half of the voters or
%% more at once (without the smallest core) leaves the rest without a
%% quorum: a cluster of two cores with no proxy, the smaller one failed, or
%% two hosts of a core and a proxy each, the one with the smaller core
%% gone.
-module(kraken_cluster_quorum).

-export([new/4, step/4, forget/2, has/1, ever/1, voters/1, counted/1, tiebreaker/1]).
-export_type([quorum/0]).

-define(SETTLE, 3200).

-type role() :: core | proxy.
-type members() :: #{node() => role()}.

-record(quorum, {self :: node(),
                 joins :: boolean(),          % given nodes to join
                 alone_at = 0 :: integer() | infinity, % from when it may form a cluster
                                                       % alone (infinity: never)
                 voters = #{} :: members(),
                 has = false :: boolean(),
                 ever = false :: boolean(),   % had the quorum once: in a cluster
                 counted = [] :: [node()],    % the voters that counted at the last step
                 live = [] :: [node()],       % the live members at the last step
                 since = 0 :: integer()}).    % since when they are the same

-opaque quorum() :: #quorum{}.

%% @doc A node's quorum at its start: a node given no node to join is a
%% cluster of its own (it has the quorum); one that joins has no voters
%% yet, and forms a cluster alone only if it hears nobody from AloneAt (ms,
%% the time of step/4) on; never with AloneAt `infinity' (option
%% cluster_join_only: it waits for a member).
-spec new(node(), role(), boolean(), integer() | infinity) -> quorum().
new(Self, Role, false, _AloneAt) ->
    #quorum{self = Self, joins = false, voters = #{Self => Role}, has = true, ever = true};
new(Self, _Role, true, AloneAt) ->
    #quorum{self = Self, joins = true, alone_at = AloneAt}.

%% @doc One step at time Now (ms): Live are the members heard within the
%% deadline, this node among them; Heard, for each live member but this
%% node, what its heartbeat says: its voters, whether it has the quorum,
%% the members it hears, and whether it ever had the quorum (undefined
%% voters and members heard, and false, from a release before the quorum).
-type report() :: {members() | undefined, boolean(), [node()] | undefined, boolean()}.
-spec step(quorum(), members(), #{node() => report()}, integer()) -> quorum().
step(Q0, Live, Heard, Now) ->
    Q1 = admit(track(Q0, Live, Now), Live, Heard, Now),
    In = counted(Q1, Live, Heard),
    Has = majority(Q1#quorum.voters, In),
    Q2 = Q1#quorum{has = Has, counted = In, ever = Q1#quorum.ever orelse Has},
    case Has of
        true -> settle(grow(Q2, Live, Heard), Heard, Now);
        false -> Q2
    end.

%% @doc A member that stopped on purpose is no longer a voter.
-spec forget(quorum(), node()) -> quorum().
forget(Q = #quorum{voters = V}, Node) ->
    Q#quorum{voters = maps:remove(Node, V)}.

-spec has(quorum()) -> boolean().
has(#quorum{has = Has}) ->
    Has.

%% @doc Whether it ever had the quorum (it belongs to a cluster).
-spec ever(quorum()) -> boolean().
ever(#quorum{ever = Ever}) ->
    Ever.

-spec voters(quorum()) -> members().
voters(#quorum{voters = V}) ->
    V.

%% @doc The voters that counted at the last step (heard, and listing this
%% node among their own voters).
-spec counted(quorum()) -> [node()].
counted(#quorum{counted = In}) ->
    In.

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
%% node among them; for a node that never had the quorum, when no member
%% it hears ever had one (a new cluster), the live members, again at each
%% step until they make a quorum (itself alone only if it joins nobody, or
%% hears nobody once its start-up wait is over).
admit(Q, Live, Heard, Now) ->
    case counts(Q, Live, Heard) of
        true ->
            Q;
        false ->
            Self = Q#quorum.self,
            %% A member with the quorum listing this node; for a node that
            %% never had the quorum (started, or restarted after a crash),
            %% also one in a cluster without the quorum now: it remembers
            %% this node's voters as this node would have, had it kept
            %% them (without it, crashed voters that come back were never
            %% counted again: a cluster of two whose smaller core crashed
            %% and came back had no quorum for ever; review).
            Theirs = [B || {B, Has, _, Ever} <- lists:sort(fun({_, A, _, _}, {_, B2, _, _}) ->
                                                                   A >= B2
                                                           end, maps:values(Heard)),
                           Has orelse (Ever andalso not Q#quorum.ever),
                           is_map(B), maps:is_key(Self, B)],
            %% Nobody heard belongs to a cluster yet.
            New = lists:all(fun({_, Has, _, Ever}) -> not Has andalso not Ever end,
                            maps:values(Heard)),
            %% ... and they all hear the same members as this node: a new
            %% cluster forms only from a group fully connected (two nodes
            %% each hearing a third but not each other would each take a
            %% set of its own; review).
            Clique = lists:all(fun({M, {_, _, H, _}}) ->
                                       not is_list(H) orelse
                                           lists:sort([M | H]) =:= lists:sort(maps:keys(Live))
                               end, maps:to_list(Heard)),
            case Theirs of
                [B | _] ->
                    Q#quorum{voters = B};
                [] when not Q#quorum.ever, New, Clique,
                        not Q#quorum.joins orelse map_size(Live) >= 2 orelse
                        (Q#quorum.alone_at =/= infinity andalso Now >= Q#quorum.alone_at) ->
                    Q#quorum{voters = Live};
                [] ->
                    Q
            end
    end.

counts(Q, Live, Heard) ->
    majority(Q#quorum.voters, counted(Q, Live, Heard)).

%% The voters heard that list this node among their own (this node too).
counted(#quorum{self = Self, voters = Voters}, Live, Heard) ->
    [N || N <- lists:sort(maps:keys(Voters)), maps:is_key(N, Live),
          N =:= Self orelse lists_me(maps:get(N, Heard, {undefined, false, undefined, false}),
                                     Self)].

majority(Voters, _In) when map_size(Voters) =:= 0 ->
    false;
majority(Voters, In) ->
    N = map_size(Voters),
    2 * length(In) > N orelse
        (2 * length(In) =:= N andalso lists:member(tiebreaker(Voters), In)).

lists_me({undefined, _, _, _}, _Self) -> true;
lists_me({Voters, _, _, _}, Self) -> maps:is_key(Self, Voters).

%% Whether every member heard (but X) reports hearing X; one from a
%% release before the quorum says nothing, and is not asked.
all_hear(X, Heard) ->
    lists:all(fun({M, {_, _, Hears, _}}) -> M =:= X orelse Hears =:= undefined orelse
                                             lists:member(X, Hears)
              end, maps:to_list(Heard)).

%% A member heard becomes a voter once every member heard hears it too,
%% and only while every voter counts here (a node that grew while some
%% voter was out of its sight, behind a member that saw both, could count
%% a majority of a set the others do not have; review).
grow(Q = #quorum{voters = V, counted = In}, Live, Heard) ->
    case lists:sort(maps:keys(V)) =:= In of
        true ->
            New = maps:filter(fun(N, _) -> not maps:is_key(N, V) andalso all_hear(N, Heard) end,
                              Live),
            Q#quorum{voters = maps:merge(V, New)};
        false ->
            Q
    end.

%% A voter no member heard reports hearing stops being one, once the live
%% members stayed the same for ?SETTLE ms.
settle(Q = #quorum{since = Since, voters = V, self = Self}, Heard, Now)
  when Now - Since >= ?SETTLE ->
    Reported = lists:append([H || {_, _, H, _} <- maps:values(Heard), is_list(H)]),
    Gone = [N || N <- maps:keys(V), N =/= Self, not maps:is_key(N, Heard),
                 not lists:member(N, Reported)],
    %% Only while every voter that stays counts here (review: a chain of
    %% members let one side drop a voter the other side still counted).
    case lists:sort(maps:keys(V)) -- Gone =:= Q#quorum.counted of
        true -> Q#quorum{voters = maps:without(Gone, V)};
        false -> Q
    end;
settle(Q, _Heard, _Now) ->
    Q.
