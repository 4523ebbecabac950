%% @doc What kraken_cluster tells the engine of the cluster (docs/cluster.md,
%% "Membership and failure detection"; the `cluster' request of
%% docs/engine-protocol.md): pure functions, and tell/3, which sends it;
%% kraken_cluster calls that whenever it changed and whenever the engine
%% was restarted.
%%
%% The engine links to the nodes it is given and decides itself which one
%% owns a topic (cluster_hash.c) among the owner sets it is given, and
%% carries the messages. What it is given, a msg(): `{Links, Owners, Alt,
%% MissingOwners, MissingAlt}', the links as `{Name, Host, Port}' (Name a
%% node name as a binary, Host a numeric address), the others names:
%%
%%   - on a node not below parents (cores/5): the live cores that have the
%%     quorum, this node among them if it is a core, and the owner sets of
%%     the view among them (kraken_cluster_move:engine_sets/4 and
%%     engine_missing/3: who owns topics is the view, not the live set). A
%%     node without the quorum is on the minority side (or not admitted
%%     yet): its engine gets no live core, as a proxy cut off from every
%%     core, so it refuses its clients' publishes and subscribes and
%%     disconnects those holding topics (docs/cluster.md, "Quorum");
%%   - on a proxy below proxies (option `parents', parents/3; docs/cluster.md
%%     "A proxy below a proxy"): its live parents, not the cores, as `{Name,
%%     Host, Port, 0, parent}' (the link says `set child', so the parent
%%     serves it as a client and subscribes upstream for it). They own
%%     everything between them; no move concerns it. A parent that sits
%%     below this node (its parents, or theirs, lead here: a configuration
%%     cycle) is not used: each would forward the other's publishes back,
%%     for ever;
%%   - always, the static `upstreams' (Kraken nodes outside the Erlang
%%     cluster, upstreams/1), as `{<<"host:port">>, Ip, Port,
%%     upstream_poll_ms}': the engine polls one that refuses push mode.
-module(kraken_cluster_owners).

-export([cores/5, parents/3, upstreams/1, tell/3]).
-export_type([msg/0, upstream/0]).

-include_lib("kernel/include/logger.hrl").

-type name() :: binary().
-type upstream() :: {name(), binary(), integer(), integer()}.
-type link() :: {name(), binary(), integer()} | {name(), binary(), integer(), 0, parent} |
                upstream().
-type msg() :: {[link()], [name()], [name()], [name()], [name()]}.

%% @doc For a node not below parents, given whether it has the quorum, its
%% own heartbeat Info if it is a core (`[Info]', else `[]'), the live
%% members' Infos (kraken_cluster_live), the static upstreams and the view.
-spec cores(boolean(), [map()], [map()], [upstream()],
            kraken_cluster_move:view() | undefined) -> msg().
cores(Has, Mine, Live, Upstreams, View) ->
    Cores = lists:usort([endpoint(I) || Has,
                                        I <- Mine ++ [I || I <- Live, maps:get(role, I) =:= core,
                                                           kraken_cluster_live:counted(I)]]),
    LiveNames = lists:usort([N || {N, _, _} <- Cores]),
    Seen = kraken_cluster_live:seen_names(Live),
    {O, A} = kraken_cluster_move:engine_sets(View, LiveNames, Seen,
                                             [N || {N, _, _, _} <- Upstreams]),
    {MO, MA} = kraken_cluster_move:engine_missing(View, LiveNames, Seen),
    {lists:usort(Cores ++ Upstreams), O, A, MO, MA}.

%% @doc For a proxy below Parents, given the live members' Infos and the
%% static upstreams: what to tell its engine, and the live parents not used
%% (they sit below it).
-spec parents([node()], [map()], [upstream()]) -> {msg(), [node()]}.
parents(Parents, Live, Upstreams) ->
    ParentsOf = maps:from_list([{maps:get(node, I), maps:get(parents, I, [])} || I <- Live]),
    LiveParents = [I || I <- Live, lists:member(maps:get(node, I), Parents)],
    {Cyclic, Fine} = lists:partition(
                       fun(I) -> leads_here(maps:get(parents, I, []), ParentsOf, []) end,
                       LiveParents),
    Ups = lists:usort([parent_endpoint(I) || I <- Fine] ++ Upstreams),
    Names = [element(1, U) || U <- Ups],
    {{Ups, Names, Names, [], []}, [maps:get(node, I) || I <- Cyclic]}.

%% @doc The static upstreams of a configuration: always live, named
%% "host:port" as configured, with the interval at which to poll one that
%% refuses push mode.
-spec upstreams([kraken_config:option()]) -> [upstream()].
upstreams(Config) ->
    Poll = proplists:get_value(upstream_poll_ms, Config),
    [{list_to_binary(Host ++ ":" ++ integer_to_list(Port)), resolve(Host), Port, Poll}
     || {Host, Port} <- proplists:get_value(upstreams, Config)].

%% @doc Tells the engine Msg (Sent: what it was told last, undefined when
%% nothing yet; Child: whether this node is below parents); says so in the
%% log when the links changed, or when the engine refuses it.
-spec tell(msg(), msg() | undefined, boolean()) -> ok | refused.
tell({Links, Owners, Alt, MissOwn, MissAlt}, Sent, Child) ->
    Self = atom_to_binary(node()),
    case catch kraken_engine:call({cluster, {Self, Links, Owners, Alt, MissOwn, MissAlt}}, 2000) of
        ok ->
            case Sent of
                {Links, _, _, _, _} -> ok;
                _ -> ?LOG_INFO("kraken cluster: live ~s ~s",
                               [case Child of false -> "cores"; true -> "parents" end,
                                case Links of
                                    [] -> "(none: publishes are refused until one is heard)";
                                    _ -> lists:join(" ", [element(1, L) || L <- Links])
                                end])
            end,
            ok;
        Other ->
            ?LOG_WARNING("kraken cluster: the engine refused the core list: ~0p", [Other]),
            refused
    end.

%%% Internal functions

%% Whether walking up from these nodes (through the parents each one's
%% heartbeats name) reaches this node.
leads_here([], _, _) -> false;
leads_here([N | _], _, _) when N =:= node() -> true;
leads_here([N | T], ParentsOf, Seen) ->
    case lists:member(N, Seen) of
        true -> leads_here(T, ParentsOf, Seen);
        false -> leads_here(maps:get(N, ParentsOf, []) ++ T, ParentsOf, [N | Seen])
    end.

endpoint(#{node := Node, host := Host, port := Port}) ->
    {atom_to_binary(Node), Host, Port}.

%% A parent as the engine's upstream: a member of the cluster (no polling)
%% whose link is a child's, not a peer's.
parent_endpoint(#{node := Node, host := Host, port := Port}) ->
    {atom_to_binary(Node), Host, Port, 0, parent}.

resolve(Host) ->
    case inet:parse_address(Host) of
        {ok, Addr} ->
            list_to_binary(inet:ntoa(Addr));
        {error, _} ->
            case inet:getaddr(Host, inet) of
                {ok, Addr} -> list_to_binary(inet:ntoa(Addr));
                {error, _} -> list_to_binary(Host)   % the engine will fail to connect, and say so
            end
    end.
