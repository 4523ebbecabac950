%% @doc Cluster membership and failure detection (docs/cluster.md): the
%% gen_server that holds this node's view of the cluster. It decides
%% little itself: it asks the pure modules beside it, and carries out what
%% they say.
%%
%% Started by kraken_sup, after the engine, on a node with `role' proxy, a
%% non-empty `cluster_nodes' or `parents'. It:
%%
%%   - connects to `cluster_nodes' (any one member is enough: distribution
%%     connects the rest), and keeps retrying those it cannot reach, and
%%     every node it ever heard a heartbeat from (kraken_cluster_connect);
%%   - joins the `pg' group of its role (`core' or `proxy') in the scope
%%     `kraken_cluster_pg'; the groups are how members find each other;
%%   - every ?TICK ms (kraken_cluster.hrl) sends a heartbeat `{kraken_hb,
%%     Pid, Info}' to every member of both groups, with `nosuspend': a hung
%%     member never blocks this process. Info (kraken_cluster_live:
%%     heartbeat/3) is its node, role, the host and port of its Kraken
%%     listener (the host being the address it advertises,
%%     kraken_cluster_ops:advertised/1), its view and its side of the
%%     quorum. From the others' it knows who is live (kraken_cluster_live):
%%     a member not heard from for ?DEADLINE ms is not live, whatever
%%     distribution thinks (net_ticktime is 60 s: far too slow for a hung
%%     node); a nodedown removes it at once; one that speaks again is live
%%     again (it "comes back");
%%   - steps its quorum with them (kraken_cluster_quorum): a node on the
%%     minority side of a partition serves nothing;
%%   - tells the engine the live cores and who owns topics
%%     (kraken_cluster_owners), whenever that changes and whenever the
%%     engine was restarted. The engine decides ownership (cluster_hash.c)
%%     and carries the messages;
%%   - asks its engine every tick whether it answers (kraken_cluster_health):
%%     a node whose engine hangs sends no heartbeat until it answers again,
%%     so the others stop counting it live.
%%
%% Moves (kraken_cluster_move, docs/cluster.md "Moves"): which cores own
%% topics is not simply "the live ones": it is the newest view, which the
%% leader (the smallest live owner) changes in three phases, each once every
%% live member applied the last one and its engine synced (members say so in
%% their heartbeats). A core that joins or comes back, or stops draining
%% (undrain/0), is moved in that way; a draining one (drain/1, and
%% `bin/kraken stop') is moved out. A core that fails is dropped from the
%% engines' owners at once, as before (its holders are disconnected). A
%% proxy below proxies (option `parents', docs/cluster.md "A proxy below a
%% proxy") takes no part in moves: the leader does not wait for it (its
%% parents do, and they hold its topics at the cores).
%%
%% For the operator (kraken_cluster_ops; docs/cluster.md, "Runbook"):
%% status/0 keeps a member that stopped answering, as not live, for
%% ?LOST_SHOWN ms (`dead (Ns)' in `bin/kraken cluster_status'); a seed of
%% `cluster_nodes' never heard from (a typo forms a cluster of its own
%% silently otherwise) is listed by unreached_seeds/0 and warned about, as
%% is one that refuses the connection while it runs (most likely a
%% different Erlang cookie: kraken_cluster_connect); a member on another
%% host met with a loopback endpoint (this node's or its own) is warned
%% about once.
-module(kraken_cluster).
-behaviour(gen_server).

-export([start_link/1, child_specs/1, clustered/1, status/0, node_name/1,
         view/0, quorum/0, drain/1, undrain/0, unreached_seeds/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-include_lib("kernel/include/logger.hrl").
-include("kraken_cluster.hrl").

-define(SCOPE, kraken_cluster_pg).
%% A member that stopped answering stays in status/0 (as not live) this
%% long, unless it is heard again or stopped on purpose.
-define(LOST_SHOWN, 300000).

-record(state, {role :: core | proxy,
                parents = [] :: [node()],          % a proxy below these (a child)
                below = [] :: [node()],            % parents not used: they sit below it
                info :: map(),
                source :: kraken_cluster_ops:source(),  % where info's host comes from
                members = #{} :: kraken_cluster_live:members(),
                sent :: term(),
                connect :: kraken_cluster_connect:connect(),  % reaching the others
                ready_at :: integer(),
                health :: kraken_cluster_health:health(),   % whether the engine answers
                upstreams = [] :: [kraken_cluster_owners:upstream()],
                view :: kraken_cluster_move:view() | undefined,
                view_at = 0 :: integer(),       % when this view was applied
                synced = false :: boolean(),    % the engine synced on what it was sent
                syncing = false :: boolean(),   % a sync poll is scheduled
                draining = false :: boolean(),
                quiet_until = 0 :: integer(),   % no leading before (start, resume)
                move_nodes = [] :: [node()],    % the members of the move this node leads
                quorum :: kraken_cluster_quorum:quorum() | undefined,  % undefined: a child
                last_tick = 0 :: integer(),
                lost = #{} :: #{node() => {map(), integer()}},  % stopped answering: {Info, Heard}
                loopback_warned = #{} :: #{node() => true}}).

%%% API

%% @doc The supervisor children for a configuration: none on a single node.
-spec child_specs([kraken_config:option()]) -> [supervisor:child_spec()].
child_specs(Config) ->
    case clustered(Config) of
        false ->
            [];
        true ->
            [#{id => kraken_cluster_pg, start => {pg, start_link, [?SCOPE]},
               restart => permanent, shutdown => 5000, type => worker, modules => [pg]},
             #{id => kraken_cluster, start => {?MODULE, start_link, [Config]},
               restart => permanent, shutdown => 5000, type => worker,
               modules => [?MODULE]}]
    end.

%% @doc Whether a configuration puts the node in a cluster.
-spec clustered([kraken_config:option()]) -> boolean().
clustered(Config) ->
    proplists:get_value(role, Config, core) =:= proxy orelse
        proplists:get_value(cluster_nodes, Config, []) =/= [] orelse
        proplists:get_value(parents, Config, []) =/= [].

-spec start_link([kraken_config:option()]) -> {ok, pid()} | {error, term()}.
start_link(Config) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, Config, []).

%% @doc This node and every member heard from: `{Node, Role, Host, Port,
%% Live, MsSinceHeard, Draining}' (MsSinceHeard 0 for this node), sorted by
%% node, then the static upstreams as `{<<"host:port">>, upstream, Ip, Port,
%% true, -1, false}'; `not_clustered' when the node is not in a cluster.  A
%% member that stopped answering (its heartbeats late, or its node down) is
%% listed, not live, for ?LOST_SHOWN ms, unless it stopped on purpose.
-spec status() -> [{node() | binary(), core | proxy | upstream, binary(), integer(),
                   boolean(), integer(), boolean()}] | not_clustered.
status() ->
    case whereis(?MODULE) of
        undefined -> not_clustered;
        _ -> gen_server:call(?MODULE, status, 10000)
    end.

%% @doc The nodes of `cluster_nodes' (and `parents') never heard from since
%% this node started: a typo there, or nodes not started; `{Node, refused}'
%% for one that runs (epmd lists it) but refused the connection.
-spec unreached_seeds() -> [node() | {node(), refused}].
unreached_seeds() ->
    gen_server:call(?MODULE, unreached_seeds, 10000).

%% @doc The view this node applies, whether its engine synced on it, and
%% whether this node drains: `{View, Synced, Draining}'.
-spec view() -> {kraken_cluster_move:view() | undefined, boolean(), boolean()}.
view() ->
    gen_server:call(?MODULE, view, 10000).

%% @doc Whether this node has the quorum (kraken_cluster_quorum), with its
%% live voters and all of its voters; `not_counted' for a proxy below
%% parents (they count for it).
-spec quorum() -> {boolean(), [node()], [node()]} | not_counted.
quorum() ->
    gen_server:call(?MODULE, quorum, 10000).

%% @doc Moves every topic of this core to the other cores, and returns once
%% the cluster applied that (or after TimeoutMs: `{error, timeout}'; it keeps
%% draining). It then stays up owning nothing until undrain/0 or a stop.
-spec drain(non_neg_integer()) -> ok | {error, not_clustered | proxy | last_core | timeout}.
drain(TimeoutMs) ->
    case whereis(?MODULE) of
        undefined ->
            {error, not_clustered};
        _ ->
            case gen_server:call(?MODULE, drain, 10000) of
                ok -> wait_drained(erlang:monotonic_time(millisecond) + TimeoutMs);
                Error -> Error
            end
    end.

wait_drained(Deadline) ->
    case gen_server:call(?MODULE, drained, 10000) of
        true -> ok;
        last_core -> {error, last_core};   % the others drain too (all stopped at once)
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> {error, timeout};
                false -> timer:sleep(50), wait_drained(Deadline)
            end
    end.

%% @doc Takes a drained core back: its topics move back to it
%% (`not_drained' when it was not drained: nothing to do).
-spec undrain() -> ok | not_drained | {error, not_clustered | proxy}.
undrain() ->
    case whereis(?MODULE) of
        undefined -> {error, not_clustered};
        _ -> gen_server:call(?MODULE, undrain, 10000)
    end.

%% @doc `name' -> name@<this node's host>; `name@host' as it is.
-spec node_name(atom()) -> node().
node_name(Name) ->
    case lists:member($@, atom_to_list(Name)) of
        true ->
            Name;
        false ->
            [_, Host] = string:split(atom_to_list(node()), "@"),
            list_to_atom(atom_to_list(Name) ++ "@" ++ Host)
    end.

%%% gen_server callbacks

init(Config) ->
    process_flag(trap_exit, true),   % the connector and checker helpers' exits
    Role0 = proplists:get_value(role, Config, core),
    Parents0 = proplists:get_value(parents, Config, []),
    case node() of
        nonode@nohost ->
            {stop, {shutdown, {bad_config, "kraken: role and cluster_nodes need a "
                               "distributed node (bin/kraken names it)"}}};
        _ when Parents0 =/= [], Role0 =/= proxy ->
            {stop, {shutdown, {bad_config, "kraken: parents needs role proxy (a core "
                               "serves its own topics)"}}};
        _ ->
            Role = Role0,
            Parents = lists:usort([node_name(N) || N <- Parents0]) -- [node()],
            Nodes = lists:usort([node_name(N) || N <- proplists:get_value(cluster_nodes, Config),
                                                 node_name(N) =/= node()] ++ Parents),
            {Host, Source} = kraken_cluster_ops:advertised(Config),
            Info = #{node => node(), role => Role, parents => Parents,
                     host => Host, port => kraken_engine:port()},
            ok = pg:join(?SCOPE, Role, self()),
            ok = net_kernel:monitor_nodes(true),
            ?LOG_INFO("kraken cluster: ~s ~s, endpoint ~s (~s), joining ~0p",
                      [Role, node(), kraken_cluster_ops:endpoint_text(Host, maps:get(port, Info)),
                       kraken_cluster_ops:source_text(Source), Nodes]),
            kraken_cluster_ops:warn_listen(proplists:get_value(listen_ip, Config), Host, Source),
            self() ! tick,
            Upstreams = kraken_cluster_owners:upstreams(Config),
            %% The engine gets a view only once the members had a tick or two
            %% to be heard: a restarted kraken_cluster must not tell it that
            %% every other core is gone.
            Ready = now_ms() + 2 * ?TICK + 100,
            Parents =/= [] andalso
                ?LOG_INFO("kraken cluster: below ~0p (its clients' topics go through them)",
                          [Parents]),
            %% A node given nodes to join has no quorum until the cluster
            %% admits it (or it heard nobody by the time it would tell its
            %% engine the first view); a child's parents count for it.
            %% With cluster_join_only, never alone: it waits for a member
            %% (one restarted while cut off from all of them would form a
            %% cluster of its own otherwise: split brain until the heal).
            JoinOnly = proplists:get_value(cluster_join_only, Config, false),
            %% (Below parents it has no quorum of its own: nothing to wait for.)
            JoinOnly andalso Nodes =/= [] andalso Parents =:= [] andalso
                ?LOG_INFO("kraken cluster: cluster_join_only: this node serves once a member "
                          "of ~0p admits it; it never forms a cluster alone", [Nodes]),
            Quorum = case Parents of
                         [] -> kraken_cluster_quorum:new(node(), Role, Nodes =/= [],
                                                         case JoinOnly of
                                                             true -> infinity;
                                                             false -> Ready
                                                         end);
                         _ -> undefined
                     end,
            {ok, #state{role = Role, connect = kraken_cluster_connect:new(Nodes, now_ms()),
                        info = Info, source = Source,
                        upstreams = Upstreams,
                        parents = Parents, quorum = Quorum,
                        ready_at = Ready, health = kraken_cluster_health:new(now_ms()),
                        last_tick = now_ms(), quiet_until = Ready + ?DEADLINE}}
    end.

handle_call(status, _From, S = #state{members = Members, info = Info, upstreams = Ups}) ->
    {reply, kraken_cluster_ops:status({Info, S#state.draining}, maps:values(Members),
                                      S#state.lost, Ups, now_ms()), S};
handle_call(unreached_seeds, _From, S = #state{connect = C}) ->
    {reply, kraken_cluster_connect:unreached_seeds(C), S};
handle_call(view, _From, S = #state{view = V, synced = Synced, draining = D}) ->
    {reply, {V, Synced, D}, S};
handle_call(quorum, _From, S = #state{quorum = undefined}) ->
    {reply, not_counted, S};
handle_call(quorum, _From, S = #state{quorum = Q}) ->
    Voters = lists:sort(maps:keys(kraken_cluster_quorum:voters(Q))),
    {reply, {kraken_cluster_quorum:has(Q), kraken_cluster_quorum:counted(Q), Voters}, S};
handle_call(drain, _From, S = #state{role = proxy}) ->
    {reply, {error, proxy}, S};
handle_call(drain, _From, S = #state{draining = true}) ->
    {reply, ok, S};
handle_call(drain, _From, S) ->
    Me = atom_to_binary(node()),
    case [N || {N, D} <- live_cores(S), N =/= Me, not D] of
        [] ->
            {reply, {error, last_core}, S};
        _ ->
            ?LOG_NOTICE("kraken cluster: draining: this core's topics move to the others"),
            {reply, ok, lead(announce(S#state{draining = true}))}
    end;
handle_call(drained, _From, S = #state{view = V, synced = Synced}) ->
    Me = atom_to_binary(node()),
    Others = kraken_cluster_live:reports(movers(S)),
    Reply = case kraken_cluster_move:drained(Me, {V, Synced}, Others) of
                true -> true;
                false ->
                    case [N || {N, false} <- live_cores(S), N =/= Me] of
                        [] -> last_core;
                        _ -> false
                    end
            end,
    {reply, Reply, S};
handle_call(undrain, _From, S = #state{role = proxy}) ->
    {reply, {error, proxy}, S};
handle_call(undrain, _From, S = #state{draining = false}) ->
    {reply, not_drained, S};
handle_call(undrain, _From, S) ->
    ?LOG_NOTICE("kraken cluster: no longer draining: topics move back here"),
    {reply, ok, lead(announce(S#state{draining = false}))};
handle_call(_, _From, S) ->
    {reply, {error, unknown_call}, S}.

handle_cast(_, S) ->
    {noreply, S}.

handle_info(tick, S00 = #state{last_tick = Last}) ->
    erlang:send_after(?TICK, self(), tick),
    Now = now_ms(),
    %% A long gap between ticks: this VM was stopped (SIGSTOP), so what it
    %% knows is stale; it leads nothing, and does not confirm its engine's
    %% view (cluster_fresh.c), until it heard the others again.  The others
    %% were not silent meanwhile: this node did not listen.  So their
    %% silence is counted without the gap (a member that really died
    %% meanwhile goes after the deadline, or at its nodedown), and the
    %% engine is not counted hung for it.
    S0 = case Now - Last > 5 * ?TICK of
             true ->
                 Gap = Now - Last,
                 Until = Now + ?DEADLINE + ?TICK,
                 {Stale, Health} = kraken_cluster_health:resume(S00#state.health, Gap, Now, Until),
                 ?LOG_WARNING("kraken cluster: this node did not run for ~b ms (stopped?)~s",
                              [Gap, case Stale of
                                        true -> "; it confirms its engine's view again once "
                                                "it heard the others";
                                        false -> ""
                                    end]),
                 S00#state{last_tick = Now, quiet_until = Until, health = Health,
                           members = kraken_cluster_live:shift(S00#state.members, Gap, Now)};
             false ->
                 S00#state{last_tick = Now}
         end,
    S1 = S0#state{connect = kraken_cluster_connect:tick(S0#state.connect, Now)},
    S2 = check_engine(S1),
    %% Members dropped before the heartbeat: it carries the live cores as
    %% of this tick (a node that dropped a core first refuses the core's
    %% topics while another member's heartbeat still lists it).
    S3 = heartbeat(update(S2)),
    {noreply, lead(poll_sync(S3))};
handle_info(sync, S) ->
    {noreply, lead(poll_sync(S#state{syncing = false}))};
handle_info({engine_health, Pid, Reply}, S = #state{health = H}) ->
    {noreply, S#state{health = kraken_cluster_health:answer(H, Pid, Reply, now_ms())}};
handle_info({kraken_hb, Pid, Info = #{leaving := true}}, S = #state{members = Members}) ->
    %% Its last heartbeat: it stops on purpose (terminate/2), so it is no
    %% longer a voter, and no longer live.
    ?LOG_INFO("kraken cluster: ~s ~s is stopping", [maps:get(role, Info), node(Pid)]),
    Q = case S#state.quorum of
            undefined -> undefined;
            Q0 -> kraken_cluster_quorum:forget(Q0, node(Pid))
        end,
    {noreply, lead(update(S#state{members = maps:remove(Pid, Members), quorum = Q,
                                  lost = maps:remove(node(Pid), S#state.lost)}))};
handle_info({kraken_hb, Pid, Info}, S = #state{members = Members, connect = C})
  when is_map(Info) ->
    New = not maps:is_key(Pid, Members),
    S1 = S#state{members = Members#{Pid => {Info, now_ms()}},
                 connect = kraken_cluster_connect:heard(C, node(Pid)),
                 lost = maps:remove(node(Pid), S#state.lost)},
    S2 = adopt(maps:get(view, Info, undefined), S1),
    case New orelse S2#state.view =/= S#state.view of
        true -> {noreply, lead(update(warn_loopback(Info, S2)))};   % a join shows at once
        false -> {noreply, lead(S2)}
    end;
handle_info({nodedown, Node}, S = #state{members = Members}) ->
    Gone = maps:filter(fun(P, _) -> node(P) =:= Node end, Members),
    case maps:size(Gone) of
        0 -> {noreply, S};
        _ ->
            ?LOG_WARNING("kraken cluster: lost the connection to node ~s", [Node]),
            {noreply, update(S#state{members = maps:without(maps:keys(Gone), Members),
                                     lost = lose(maps:values(Gone), S#state.lost)})}
    end;
handle_info({nodeup, _}, S) ->
    {noreply, S};
%% From kraken_cluster_connect's helpers, which try to connect.
handle_info({refused, Node}, S = #state{connect = C}) ->
    {noreply, S#state{connect = kraken_cluster_connect:refused(C, Node, now_ms())}};
handle_info({not_running, Node}, S = #state{connect = C}) ->
    {noreply, S#state{connect = kraken_cluster_connect:not_running(C, Node)}};
handle_info({'EXIT', Pid, _}, S = #state{health = H, connect = C}) ->
    {noreply, S#state{health = kraken_cluster_health:exited(H, Pid),
                      connect = kraken_cluster_connect:exited(C, Pid)}};
handle_info(_, S) ->
    {noreply, S}.

%% Stopped on purpose (not a crash): the others stop counting this node as
%% a voter at once (kraken_cluster_quorum).
terminate(Reason, S = #state{info = Info}) when Reason =:= normal; Reason =:= shutdown;
                                                 element(1, Reason) =:= shutdown ->
    send_heartbeats(Info#{leaving => true}, S),
    ok;
terminate(_Crash, _S) ->
    ok.   % restarted at once: the others may not even notice

%%% Internal functions

now_ms() ->
    erlang:monotonic_time(millisecond).

%% Members that stopped answering, kept for status/0.
lose(Members, Lost) ->
    kraken_cluster_ops:lose([{maps:get(node, I), I, H} || {I, H} <- Members], Lost).

warn_loopback(Info = #{node := Node}, S = #state{info = Mine, source = Source,
                                                 loopback_warned = Warned}) ->
    case maps:is_key(Node, Warned) of
        true -> S;
        false -> kraken_cluster_ops:warn_loopback(Mine, Source, Info),
                 S#state{loopback_warned = Warned#{Node => true}}
    end;
warn_loopback(_Info, S) ->
    S.

%% A restarted engine knows nothing of the cluster: tell it again.
check_engine(S = #state{health = H0, info = Info}) ->
    case kraken_cluster_health:restarted(H0) of
        false ->
            S;
        {true, H} ->
            Port = try kraken_engine:port() catch _:_ -> maps:get(port, Info) end,
            S#state{health = H, sent = undefined, info = Info#{port => Port}}
    end.

%% Asks the engine whether it answers (kraken_cluster_health), and sends
%% the heartbeat unless it is hung: a node whose engine hangs stops being
%% live for the others, who then move its topics.
heartbeat(S = #state{health = H0, info = Info}) ->
    Now = now_ms(),
    H = kraken_cluster_health:check(kraken_cluster_health:ask(H0, Now), Now),
    kraken_cluster_health:hung(H) orelse send_heartbeats(Info, S),
    S#state{health = H}.

%% A heartbeat now (a view applied, a sync done), unless the engine hangs.
announce(S = #state{health = H, info = Info}) ->
    kraken_cluster_health:hung(H) orelse send_heartbeats(Info, S),
    S.

send_heartbeats(Info, S = #state{view = View, synced = Synced, draining = Draining}) ->
    Msg = {kraken_hb, self(),
           kraken_cluster_live:heartbeat(Info, S#state.quorum,
                                         #{view => View, synced => Synced, draining => Draining,
                                           live => [N || {N, _} <- live_cores(S)],
                                           hears => kraken_cluster_live:hears(live(S))})},
    [erlang:send(Pid, Msg, [noconnect, nosuspend])
     || Group <- [core, proxy], Pid <- pg:get_members(?SCOPE, Group), Pid =/= self()],
    ok.

%% Drops the members not heard from within the deadline, and tells the
%% engine the live cores and who owns topics (the view) when they changed.
update(S = #state{members = Members0, role = Role, info = Info, sent = Sent,
                  upstreams = Upstreams, view = View}) ->
    Now = now_ms(),
    {Members, Dead} = kraken_cluster_live:split(Members0, Now),
    Live = [I || {I, _} <- maps:values(Members)],
    [?LOG_WARNING("kraken cluster: ~s ~s silent for ~b ms; no longer live",
                  [maps:get(role, I), maps:get(node, I), Now - H])
     || {I, H} <- Dead],
    Lost = maps:filter(fun(_, {_, H}) -> Now - H =< ?LOST_SHOWN end, lose(Dead, S#state.lost)),
    S0 = quorum_step(Live, S#state{members = Members, lost = Lost}),
    Has = S0#state.quorum =:= undefined orelse kraken_cluster_quorum:has(S0#state.quorum),
    {Msg, Below} = case S#state.parents of
                       [] -> {kraken_cluster_owners:cores(Has, [Info || Role =:= core], Live,
                                                          Upstreams, View), []};
                       Parents -> kraken_cluster_owners:parents(Parents, Live, Upstreams)
                   end,
    [?LOG_ERROR("kraken cluster: parent ~s sits below this node (a cycle of `parents'); "
                "not used", [N]) || N <- Below -- S#state.below],
    S1 = S0#state{below = Below},
    %% An engine never told anything holds its clients: so it stays
    %% until this node is admitted to a quorum.
    case Msg =:= Sent orelse Now < S#state.ready_at orelse (not Has andalso Sent =:= undefined) of
        true ->
            S1;
        false ->
            case kraken_cluster_owners:tell(Msg, Sent, S#state.parents =/= []) of
                ok -> poll_sync(S1#state{sent = Msg, synced = false});
                refused -> S1#state{sent = undefined}
            end
    end.

%% Steps the quorum with the live members and what their heartbeats say,
%% and says when this node gains or loses it.
quorum_step(_Live, S = #state{quorum = undefined}) ->
    S;
quorum_step(Live, S = #state{quorum = Q0, role = Role}) ->
    {LiveMap, Heard} = kraken_cluster_live:quorum_input(Role, Live),
    Q = kraken_cluster_quorum:step(Q0, LiveMap, Heard, now_ms()),
    Voters = lists:sort(maps:keys(kraken_cluster_quorum:voters(Q))),
    In = kraken_cluster_quorum:counted(Q),
    case {kraken_cluster_quorum:has(Q0), kraken_cluster_quorum:has(Q)} of
        {true, false} ->
            ?LOG_WARNING("kraken cluster: no quorum: ~b of the cluster's ~b members count for "
                         "this node (not ~s): it is on the minority side of a partition, or the "
                         "others failed together; its clients' publishes and subscribes are "
                         "refused and its subscribers disconnected until it hears a majority",
                         [length(In), length(Voters), lists:join(" ", [atom_to_list(N) || N <- Voters -- In])]);
        {false, true} ->
            ?LOG_NOTICE("kraken cluster: quorum: ~b of the cluster's ~b members count for this node",
                        [length(In), length(Voters)]);
        _ ->
            ok
    end,
    %% Back from the minority side it leads nothing until it could hear
    %% every member (as at a start): it may hear a core before a proxy
    %% whose connection is still being made again, and a move it led
    %% meanwhile would not wait for that proxy (the partition test's
    %% core_alone saw entries lost that way).
    Quiet = case {kraken_cluster_quorum:has(Q0), kraken_cluster_quorum:has(Q)} of
                {false, true} -> max(S#state.quiet_until, now_ms() + ?DEADLINE + ?TICK);
                _ -> S#state.quiet_until
            end,
    S#state{quorum = Q, quiet_until = Quiet}.

%% The live members' heartbeat Infos (kraken_cluster_live), this node aside.
live(#state{members = Members}) ->
    kraken_cluster_live:live(Members, now_ms()).

movers(S) ->
    kraken_cluster_live:movers(live(S)).

%% The live cores, this node among them if it is one: `{Name, Draining}'.
live_cores(S = #state{role = Role, draining = D}) ->
    kraken_cluster_live:cores({Role, D}, live(S)).

seen_names(S) ->
    kraken_cluster_live:seen_names(live(S)).

seen_cores(S = #state{view = View}) ->
    kraken_cluster_live:seen_cores(live_cores(S), seen_names(S), View).

%% Applies a view heard of when it is newer than this node's.
adopt(View, S = #state{view = Mine}) ->
    case kraken_cluster_move:newer(View, Mine) of
        true -> S#state{view = View, view_at = now_ms()};
        false -> S
    end.

%% Asks the engine whether it synced on what it was last sent (every link
%% answered a `version' sent after it), every 20 ms until it did; then says
%% so to the others at once.
poll_sync(S = #state{synced = true}) ->
    S;
poll_sync(S = #state{sent = undefined}) ->
    S;
poll_sync(S = #state{syncing = true}) ->
    S;
poll_sync(S) ->
    case catch kraken_engine:call(cluster_synced, 2000) of
        true ->
            case kraken_cluster_move:sees_owners(S#state.view,
                                                 [N || {N, _} <- live_cores(S)]) of
                true -> announce(S#state{synced = true});
                false -> S   % polled again when the live cores change (update/1)
            end;
        _ ->
            erlang:send_after(20, self(), sync),
            S#state{syncing = true}
    end.

%% The leader makes the next view when it is due (kraken_cluster_move:
%% lead/6), applies it and tells everyone.
lead(S = #state{role = proxy}) ->
    S;
lead(S = #state{quorum = Q}) ->   % a core: never below parents, so counted
    case kraken_cluster_quorum:has(Q) of
        true -> lead_(S);
        false -> S   % the minority side changes no view
    end.

lead_(S = #state{view = View, synced = Synced, view_at = At, quiet_until = Quiet}) ->
    Now = now_ms(),
    Movers = [{maps:get(node, I), maps:get(view, I, undefined), maps:get(synced, I, false)}
              || I <- movers(S)],
    case Now >= Quiet andalso
        kraken_cluster_move:lead(atom_to_binary(node()), {View, Synced, Now - At}, seen_cores(S),
                                 Movers, S#state.move_nodes, nodes()) of
        {New = {E, _, _, Owners, Alt}, Why, MoveNodes, Silent} ->
            ?LOG_INFO("kraken cluster: view ~b ~s: owners ~s; also ~s",
                      [E, Why, lists:join(" ", Owners), lists:join(" ", Alt)]),
            Silent =/= [] andalso
                ?LOG_WARNING("kraken cluster: view ~b ~s without ~0p (silent)", [E, Why, Silent]),
            announce(update(S#state{view = New, view_at = Now, move_nodes = MoveNodes}));
        _ ->   % not the leader, or no new view due
            S
    end.
