%% @doc What kraken_cluster tells the operator beyond membership itself
%% (docs/cluster.md, "Runbook" and "Configuration"): pure helpers and log
%% lines, so that kraken_cluster keeps only the state.
%%
%%   - the rows of `bin/kraken cluster_status' (kraken_cluster:status/0,
%%     status/5): every member with its endpoint, whether it is live and
%%     since when it was not heard; members that stopped answering (their
%%     heartbeats late, or their node down) are kept, with when they were
%%     last heard, so that it shows them `dead (Ns)' for a while instead of
%%     dropping them at the deadline (lose/2);
%%   - a seed of `cluster_nodes' (or `parents') never heard from is most
%%     often a typo: the node forms a cluster of its own, or joins the
%%     members it reached through its other seeds, and serves all the
%%     same, so it is said in the log (warn_seeds/1) and in
%%     `cluster_status';
%%   - each engine connects to the endpoint the others advertise
%%     (advertised/1): `cluster_advertise' when it is set (a host name is
%%     resolved once, at the application's start, by advertise/1: one that
%%     does not resolve refuses the start), else `listen_ip' when it is one
%%     address, else the address of the node's host name.  A node that
%%     listens on one address and advertises another (behind NAT) is
%%     legitimate but easily a mistake: it is said at start
%%     (warn_listen/3).  A loopback endpoint is of no use to a node on
%%     another host, and Debian maps the host name to 127.0.1.1.  When a
%%     member is first heard whose node name's host differs from this
%%     node's, and either advertises a loopback address, it is said
%%     (warn_loopback/3).
-module(kraken_cluster_ops).

-export([status/5, lose/2, warn_seeds/1, warn_loopback/3, loopback/1]).
-export([advertise/1, advertised/1, source_text/1, listen_mismatch/2, warn_listen/3,
         endpoint_text/2]).

-type source() :: cluster_advertise | listen_ip | {host_name | unresolved, string()}.
-export_type([source/0]).

-include_lib("kernel/include/logger.hrl").
-include("kraken_cluster.hrl").

%% @doc The rows of kraken_cluster:status/0 (`{Node, Role, Host, Port, Live,
%% MsSinceHeard, Draining}'), from this node's heartbeat Info and whether it
%% drains, the members heard (`{Info, Heard}'), those kept since they
%% stopped answering (lose/2; listed not live), the static upstreams and
%% the time: this node and the members sorted by node, then the upstreams.
-spec status({map(), boolean()}, [{map(), integer()}], #{node() => {map(), integer()}},
             [{binary(), binary(), integer(), integer()}], integer()) ->
          [{node() | binary(), core | proxy | upstream, binary(), integer(), boolean(),
            integer(), boolean()}].
status({Info, Draining}, Members, Lost, Ups, Now) ->
    Self = {node(), maps:get(role, Info), maps:get(host, Info), maps:get(port, Info),
            true, 0, Draining},
    Row = fun(I, H) -> {maps:get(node, I), maps:get(role, I), maps:get(host, I),
                        maps:get(port, I), Now - H =< ?DEADLINE, Now - H,
                        maps:get(draining, I, false)}
          end,
    Others = [Row(I, H) || {I, H} <- Members],
    Heard = [element(1, O) || O <- Others],
    Gone = [setelement(5, Row(I, H), false)
            || {N, {I, H}} <- maps:to_list(Lost), not lists:member(N, Heard)],
    Static = [{Name, upstream, Host, Port, true, -1, false} || {Name, Host, Port, _} <- Ups],
    lists:keysort(1, [Self | Others ++ Gone]) ++ Static.

%% @doc Adds members that stopped answering, `{Node, Info, LastHeard}', to
%% the map of those kept; one kept already keeps the first time it was
%% missed (a nodedown after the deadline changes nothing).
-spec lose([{node(), map(), integer()}], #{node() => {map(), integer()}}) ->
          #{node() => {map(), integer()}}.
lose(Members, Lost) ->
    lists:foldl(fun({N, I, H}, Acc) ->
                        case maps:is_key(N, Acc) of
                            true -> Acc;
                            false -> Acc#{N => {I, H}}
                        end
                end, Lost, Members).

%% @doc Logs the seeds never reached, if any; whether it logged.
-spec warn_seeds([node()]) -> boolean().
warn_seeds([]) ->
    false;
warn_seeds(Seeds) ->
    ?LOG_WARNING("kraken cluster: cluster_nodes ~s never reached (no heartbeat since this "
                 "node started): a typo in cluster_nodes or parents, a node not started, or a "
                 "network or cookie problem; this node goes on trying (bin/kraken "
                 "cluster_status lists them)",
                 [lists:join(" ", [atom_to_list(N) || N <- Seeds])]),
    true.

%% @doc Given this node's heartbeat info, where its address comes from
%% (advertised/1) and a member's info, first heard: warns when the member's
%% node name is on another host and either advertises a loopback address.
-spec warn_loopback(map(), source(), map()) -> ok.
warn_loopback(#{host := Mine}, Source, Info = #{node := Node, host := Theirs}) ->
    [_, MyHost] = string:split(atom_to_list(node()), "@"),
    [_, Host] = string:split(atom_to_list(Node), "@"),
    case Host =/= MyHost of
        false ->
            ok;
        true ->
            loopback(Mine) andalso
                ?LOG_WARNING("kraken cluster: this node advertises the loopback address ~s "
                             "(~s~s), but ~s ~s is on host ~s: its engine cannot reach this "
                             "node there; set cluster_advertise (or listen_ip) to this host's "
                             "address on the cluster's network, or map the host name to it",
                             [Mine, source_text(Source),
                              case Source of
                                  {host_name, _} -> ": Debian maps it to 127.0.1.1 in /etc/hosts";
                                  _ -> ""
                              end, maps:get(role, Info), Node, Host]),
            loopback(Theirs) andalso
                ?LOG_WARNING("kraken cluster: ~s ~s on host ~s advertises the loopback address "
                             "~s: this node's engine cannot reach it there (see that node's log)",
                             [maps:get(role, Info), Node, Host, Theirs]),
            ok
    end.

%% @doc Resolves the host name `cluster_advertise' may give, once, at the
%% start: the configuration with its address instead (IPv4 first, as the
%% node's host name is; IPv6 when the name has no IPv4 address), or why it
%% cannot. An address, or no cluster_advertise, is left as it is.
-spec advertise([kraken_config:option()]) -> {ok, [kraken_config:option()]} | {error, string()}.
advertise(Config) ->
    case proplists:get_value(cluster_advertise, Config) of
        undefined ->
            {ok, Config};
        Name ->
            Text = binary_to_list(Name),
            case inet:parse_strict_address(Text) of
                {ok, _} ->
                    {ok, Config};
                {error, _} ->
                    case resolve(Text) of
                        {ok, Addr} ->
                            {ok, lists:keystore(cluster_advertise, 1, Config,
                                                {cluster_advertise,
                                                 list_to_binary(inet:ntoa(Addr))})};
                        {error, Reason} ->
                            {error, lists:flatten(
                                      io_lib:format("kraken: cluster_advertise ~s does not "
                                                    "resolve: ~s (check with getent hosts ~s, "
                                                    "or give the address itself)",
                                                    [Text, inet:format_error(Reason), Text]))}
                    end
            end
    end.

resolve(Name) ->
    case inet:getaddr(Name, inet) of
        {ok, Addr} ->
            {ok, Addr};
        {error, Reason} ->
            case inet:getaddr(Name, inet6) of
                {ok, Addr} -> {ok, Addr};
                {error, _} -> {error, Reason}
            end
    end.

%% @doc The address other nodes' engines connect to, and where it comes
%% from (source_text/1 says it in the log): `cluster_advertise' (resolved
%% by advertise/1); else `listen_ip' when it is one address; else the
%% first IPv4 address of this node's host name, or 127.0.0.1 when it has
%% none.
-spec advertised([kraken_config:option()]) -> {binary(), source()}.
advertised(Config) ->
    Ip = proplists:get_value(listen_ip, Config),
    case proplists:get_value(cluster_advertise, Config) of
        undefined when Ip =:= <<"0.0.0.0">>; Ip =:= <<"::">> ->
            [_, Host] = string:split(atom_to_list(node()), "@"),
            case inet:getaddr(Host, inet) of
                {ok, Addr} -> {list_to_binary(inet:ntoa(Addr)), {host_name, Host}};
                {error, _} -> {<<"127.0.0.1">>, {unresolved, Host}}
            end;
        undefined ->
            {Ip, listen_ip};
        Advertised ->
            {Advertised, cluster_advertise}
    end.

%% @doc Where the advertised address comes from, in words.
-spec source_text(source()) -> string().
source_text(cluster_advertise) -> "cluster_advertise";
source_text(listen_ip) -> "listen_ip";
source_text({host_name, Host}) -> "what its host name " ++ Host ++ " resolves to";
source_text({unresolved, Host}) -> "its host name " ++ Host ++ " does not resolve".

%% @doc An endpoint as people write it: `10.0.0.5:15001', an IPv6 address in
%% brackets as in a URL, `[::1]:15001'.
-spec endpoint_text(binary() | string(), integer()) -> string().
endpoint_text(Host, Port) ->
    case string:find(Host, ":") of
        nomatch -> lists:flatten(io_lib:format("~s:~b", [Host, Port]));
        _ -> lists:flatten(io_lib:format("[~s]:~b", [Host, Port]))
    end.

%% @doc Whether the engine, listening on `listen_ip' Ip, may not be
%% reachable at the advertised address Host: Ip is one address and Host is
%% another (legitimate behind NAT), or Ip is every IPv4 address and Host is
%% an IPv6 one.
-spec listen_mismatch(binary(), binary()) -> false | other_address | ipv6_on_ipv4.
listen_mismatch(<<"::">>, _Host) ->
    false;
listen_mismatch(<<"0.0.0.0">>, Host) ->
    case inet:parse_strict_address(binary_to_list(Host)) of
        {ok, {_, _, _, _, _, _, _, _}} -> ipv6_on_ipv4;
        _ -> false
    end;
listen_mismatch(Ip, Ip) ->
    false;
listen_mismatch(_Ip, _Host) ->
    other_address.

%% @doc At start: warns when the engine, listening on Ip, may not be
%% reachable at the advertised Host (listen_mismatch/2).
-spec warn_listen(binary(), binary(), source()) -> ok.
warn_listen(Ip, Host, Source) ->
    case listen_mismatch(Ip, Host) of
        false ->
            ok;
        other_address ->
            ?LOG_WARNING("kraken cluster: this node listens on listen_ip ~s but advertises ~s "
                         "(~s): the other members' engines connect to ~s, so it must lead to "
                         "this listener (NAT, a port forward), or no link to this node comes "
                         "up", [Ip, Host, source_text(Source), Host]);
        ipv6_on_ipv4 ->
            ?LOG_WARNING("kraken cluster: this node listens on every IPv4 address (listen_ip "
                         "any) but advertises the IPv6 address ~s (~s): the other members' "
                         "engines cannot connect to it; set listen_ip to \"::\" (every IPv6 "
                         "and IPv4 address) or advertise an IPv4 address",
                         [Host, source_text(Source)])
    end.

%% @doc Whether an advertised address (a binary) is a loopback one.
-spec loopback(binary() | string()) -> boolean().
loopback(Host) ->
    case inet:parse_address(binary_to_list(iolist_to_binary(Host))) of
        {ok, {127, _, _, _}} -> true;
        {ok, {0, 0, 0, 0, 0, 0, 0, 1}} -> true;
        _ -> false
    end.
