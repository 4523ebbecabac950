%% @doc The cluster's admin commands of bin/kraken (docs/cluster.md,
%% "Runbook"): `cluster_status', `drain' and `undrain'. Like the functions
%% of kraken_ctl_engine, each runs on the server node (bin/kraken's
%% temporary node calls it there, kraken_ctl:remote/3) and returns
%% `{ok | error, Text}'.
-module(kraken_ctl_cluster).

-export([cluster_status/0, drain/0, undrain/0]).

-import(kraken_ctl, [table/1]).

%% @doc Every member of the cluster this node sees: role, Kraken endpoint,
%% when it was last heard from, and this engine's link to it (for a core:
%% the topics held upstream there, entries sent, received and dropped).
-spec cluster_status() -> {ok | error, iodata()}.
cluster_status() ->
    case kraken_cluster:status() of
        not_clustered ->
            {error, io_lib:format("kraken: node ~s is not in a cluster (role core, no "
                                  "cluster_nodes)~n", [node()])};
        Members ->
            Links = case catch kraken_engine:call(cluster_status) of
                        L when is_list(L) -> L;
                        _ -> []
                    end,
            Header = {"NODE", "ROLE", "ENDPOINT", "HEARD", "LINK", "UPSTREAM_TOPICS",
                      "SENT", "RECEIVED", "DROPPED"},
            View = kraken_cluster:view(),
            Rows = [member_row(M, Links, View) || M <- Members],
            {ok, [table([Header | Rows]), view_text(View),
                  quorum_text(kraken_cluster:quorum()),
                  seeds_text(kraken_cluster:unreached_seeds())]}
    end.

%% The nodes of cluster_nodes (and parents) never heard from: a typo there,
%% or nodes not started (kraken_cluster warns about them in the log too).
seeds_text([]) ->
    "";
seeds_text(Seeds) ->
    Name = fun({N, refused}) -> atom_to_list(N) ++ " (it runs but refused the connection: "
                                    "a different Erlang cookie?)";
              (N) -> atom_to_list(N)
           end,
    io_lib:format("seeds not reached: ~s~n", [lists:join(" ", [Name(N) || N <- Seeds])]).

%% Whether this node is on the majority side (docs/cluster.md,
%% "Quorum").
quorum_text(not_counted) ->
    "quorum: counted by the parents\n";
quorum_text({false, [], []}) ->
    "quorum: NO, not admitted yet (no member with the quorum lists this node yet): "
    "its clients are held\n";
quorum_text({true, In, Voters}) ->
    io_lib:format("quorum: yes, ~b of ~b members count~n", [length(In), length(Voters)]);
quorum_text({false, In, Voters}) ->
    io_lib:format("quorum: NO, ~b of ~b members count (not ~s): publishes and subscribes "
                  "are refused~n",
                  [length(In), length(Voters),
                   lists:join(" ", [atom_to_list(N) || N <- Voters -- In])]).


%% The owners of the topics as this node sees them (docs/cluster.md, "Moves").
view_text({undefined, _, D}) ->
    io_lib:format("owners: every live core (no view yet)~s~n", [draining_text(D)]);
view_text({{E, Phase, _, Owners, Alt}, Synced, D}) ->
    Move = case Owners =:= Alt of
               true -> "";
               false -> io_lib:format(", moving (~s), subscribed at ~s too", [Phase, lists:join(" ", Alt)])
           end,
    io_lib:format("owners (view ~b~s): ~s~s~s~n",
                  [E, [", not synced yet" || not Synced], lists:join(" ", Owners), Move,
                   draining_text(D)]).

draining_text(true) -> "; this node is draining";
draining_text(false) -> "".

-define(DRAIN_MS, 25000).

%% @doc Moves every topic of this core to the other cores (no loss, nobody
%% disconnected); it then owns nothing until `undrain' or a stop.
-spec drain() -> {ok | error, iodata()}.
drain() ->
    case kraken_cluster:drain(?DRAIN_MS) of
        ok -> {ok, io_lib:format("node ~s is drained: it owns no topics (bin/kraken undrain "
                                 "takes it back)~n", [node()])};
        {error, Why} -> {error, io_lib:format("kraken: drain failed: ~s~n", [drain_error(Why)])}
    end.

drain_error(not_clustered) -> "this node is not in a cluster";
drain_error(proxy) -> "a proxy owns no topics";
drain_error(last_core) -> "no other live core to take its topics";
drain_error(timeout) ->
    io_lib:format("not drained within ~b s (it goes on draining; bin/kraken cluster_status "
                  "shows the owners)", [?DRAIN_MS div 1000]).

%% @doc Takes a drained core back: its topics move back to it.
-spec undrain() -> {ok | error, iodata()}.
undrain() ->
    case kraken_cluster:undrain() of
        ok -> {ok, io_lib:format("node ~s takes its topics back~n", [node()])};
        not_drained -> {ok, io_lib:format("node ~s was not drained~n", [node()])};
        {error, Why} -> {error, io_lib:format("kraken: undrain failed: ~s~n", [drain_error(Why)])}
    end.

member_row({Node, Role, Host, Port, Live, Ago, Draining}, Links, {View, _, _}) ->
    Heard = case {Node =:= node(), Live} of
                {true, _} -> "self";
                {false, _} when Role =:= upstream -> "static";
                {false, true} -> io_lib:format("~.1fs ago", [Ago / 1000]);
                {false, false} -> lists:flatten(io_lib:format("dead (~bs)", [Ago div 1000]))
            end,
    Endpoint = kraken_cluster_ops:endpoint_text(Host, Port),
    NodeBin = if is_atom(Node) -> atom_to_binary(Node); true -> Node end,
    NodeStr = binary_to_list(NodeBin),
    Link = [{State, Topics, Received, Sent, Dropped}
            || {N, State, _, _, Topics, Received, Sent, Dropped, _} <- Links, N =:= NodeBin],
    case Link of
        [{State, Topics, Received, Sent, Dropped}] when State =/= self ->
            {NodeStr, role_text(Role, Draining, NodeBin, View), Endpoint, Heard,
             atom_to_list(State), integer_to_list(Topics), integer_to_list(Sent),
             integer_to_list(Received), integer_to_list(Dropped)};
        _ ->
            {NodeStr, role_text(Role, Draining, NodeBin, View), Endpoint, Heard, "-", "-",
             "-", "-", "-"}
    end.

%% A core that drains (its heartbeats say so) is `core/draining' while it
%% still owns topics in this node's view (or a move to or from it is under
%% way), `core/drained' once it owns none.  One word, so that scripts
%% splitting the columns on blanks keep working.
role_text(core, true, Name, {_, _, _, Owners, Alt}) ->
    case lists:member(Name, Owners ++ Alt) of
        true -> "core/draining";
        false -> "core/drained"
    end;
role_text(core, true, _Name, undefined) ->
    "core/draining";
role_text(Role, _, _, _) ->
    atom_to_list(Role).
