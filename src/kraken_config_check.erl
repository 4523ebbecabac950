%% @doc The checks of each option's value (kraken_config:validate/1):
%% check/3 returns `{ok, Normal}', the value as the engine or the node
%% uses it, or `{error, Expected}', what the option takes, for
%% kraken_config's one-line error.
%%
%% The node's own options (pid_file, log_file, engine_executable, and the
%% cluster's: role, cluster_nodes, parents, upstreams, upstream_poll_ms,
%% cluster_advertise, cluster_join_only) are checked by name; every other
%% by its type in the engine's option table (kraken_config:engine_table/0):
%% an integer in its range, an IP address (given as `any', a tuple or its
%% text; sent as text), a log level (any case; `warning' is `warn'), a
%% string of at most 255 bytes.
-module(kraken_config_check).

-export([check/3, check_level/1]).

%% @doc The normal form of an option's value, or what it expects.
-spec check(atom(), term(), [kraken_config:table_entry()]) -> {ok, term()} | {error, iodata()}.
check(pid_file, V, _) -> check_path(V);
check(log_file, V, _) -> check_path(V);
check(engine_executable, V, _) -> check_path(V);
check(role, V, _) when V =:= core; V =:= proxy -> {ok, V};
check(role, _, _) -> {error, "core or proxy"};
check(cluster_nodes, V, _) -> check_list(V, fun check_node/1, "a list of node names");
check(parents, V, _) -> check_list(V, fun check_node/1, "a list of node names");
check(upstreams, V, _) -> check_list(V, fun check_endpoint/1, "a list of \"host:port\" strings");
check(upstream_poll_ms, V, _) -> check_int(V, 10, 3600000);
check(cluster_advertise, V, _) -> check_advertise(V);
check(cluster_join_only, V, _) when is_boolean(V) -> {ok, V};
check(cluster_join_only, _, _) -> {error, "true or false"};
check(Name, V, Table) ->
    case lists:keyfind(Name, 1, Table) of
        {_, integer, Min, Max, _} -> check_int(V, Min, Max);
        {_, ip_address, _, _, _} -> check_ip(V);
        {_, log_level, _, _, _} -> check_level(V);
        {_, string, _, _, _} -> check_text(V)
    end.

%% A string option of the engine (redis_password): a non-empty binary,
%% string or atom, sent as a binary of at most 255 bytes.
check_text(undefined) ->
    {ok, undefined};
check_text(V) when is_atom(V) ->
    check_text(atom_to_binary(V));
check_text(V) when is_binary(V); is_list(V) ->
    case to_string(V) of
        error -> {error, "a string"};
        "" -> {error, "a non-empty string"};
        Str ->
            Bin = unicode:characters_to_binary(Str),
            case byte_size(Bin) =< 255 of
                true -> {ok, Bin};
                false -> {error, "a string of at most 255 bytes"}
            end
    end;
check_text(_) ->
    {error, "a string"}.

%% Any case: DEBUG, Info; `warning' is `warn'.
check_level(V) when is_atom(V) ->
    case string:lowercase(atom_to_list(V)) of
        L when L =:= "debug"; L =:= "info"; L =:= "warn"; L =:= "error" ->
            {ok, list_to_atom(L)};
        "warning" ->
            {ok, warn};
        _ ->
            {error, "debug, info, warn or error"}
    end;
check_level(_) ->
    {error, "debug, info, warn or error"}.

check_int(V, Min, infinity) when is_integer(V), V >= Min ->
    {ok, V};
check_int(V, Min, Max) when is_integer(V), V >= Min, V =< Max ->
    {ok, V};
check_int(_, Min, infinity) ->
    {error, io_lib:format("an integer >= ~b", [Min])};
check_int(_, Min, Max) ->
    {error, io_lib:format("an integer ~b..~b", [Min, Max])}.

check_list(L, Check, Expected) when is_list(L) ->
    Checked = [Check(X) || X <- L],
    case [ok || error <- Checked] of
        [] -> {ok, Checked};
        _ -> {error, Expected}
    end;
check_list(_, _, Expected) ->
    {error, Expected}.

%% A node name: an atom or a string, `name' or `name@host'.
check_node(N) when is_atom(N), N =/= '' -> N;
check_node(N) when is_list(N); is_binary(N) ->
    case to_string(N) of
        error -> error;
        "" -> error;
        Str -> list_to_atom(Str)
    end;
check_node(_) -> error.

%% "host:port" (a [v6]:port too) -> {HostString, Port}.
check_endpoint(E) when is_list(E); is_binary(E) ->
    case to_string(E) of
        error ->
            error;
        Str ->
            case string:split(Str, ":", trailing) of
                [Host0, PortStr] when Host0 =/= "" ->
                    Host = string:trim(Host0, both, "[]"),
                    case string:to_integer(PortStr) of
                        {P, ""} when P > 0, P < 65536 -> {Host, P};
                        _ -> error
                    end;
                _ ->
                    error
            end
    end;
check_endpoint(_) -> error.

-define(IP_EXPECTED, "any, an IP address tuple or a numeric IP address string").

check_ip(any) ->
    {ok, <<"0.0.0.0">>};
check_ip(T) when is_tuple(T) ->
    case valid_ip_tuple(T) of
        true -> {ok, list_to_binary(inet:ntoa(T))};
        false -> {error, ?IP_EXPECTED}
    end;
check_ip(S) when is_binary(S); is_list(S) ->
    case to_string(S) of
        "any" ->
            check_ip(any);
        Str when is_list(Str) ->
            case inet:parse_strict_address(Str) of
                {ok, Addr} -> {ok, list_to_binary(inet:ntoa(Addr))};
                {error, _} -> {error, ?IP_EXPECTED}
            end;
        error ->
            {error, ?IP_EXPECTED}
    end;
check_ip(_) ->
    {error, ?IP_EXPECTED}.

-define(ADVERTISE_EXPECTED, "a host name or an IP address other than 0.0.0.0 and ::, "
                            "e.g. \"10.0.0.5\" or \"web1.example.com\"").

%% cluster_advertise: an address (a tuple, or its text) or a host name (an
%% atom or a string), as a binary: an address in its usual text, a name as
%% given (kraken_cluster_ops:advertise/1 resolves it at start). The
%% unspecified addresses cannot be connected to.
check_advertise(undefined) ->
    {ok, undefined};
check_advertise(T) when is_tuple(T) ->
    case valid_ip_tuple(T) of
        true -> check_advertise(inet:ntoa(T));
        false -> {error, ?ADVERTISE_EXPECTED}
    end;
check_advertise(any) ->
    {error, ?ADVERTISE_EXPECTED};   % listen_ip's every address: not one to connect to
check_advertise(A) when is_atom(A) ->
    check_advertise(atom_to_list(A));
check_advertise(S) when is_binary(S); is_list(S) ->
    case to_string(S) of
        error ->
            {error, ?ADVERTISE_EXPECTED};
        Str ->
            case inet:parse_strict_address(Str) of
                {ok, {0, 0, 0, 0}} -> {error, ?ADVERTISE_EXPECTED};
                {ok, {0, 0, 0, 0, 0, 0, 0, 0}} -> {error, ?ADVERTISE_EXPECTED};
                {ok, Addr} -> {ok, list_to_binary(inet:ntoa(Addr))};
                {error, _} ->
                    case host_name(Str) of
                        true -> {ok, list_to_binary(Str)};
                        false -> {error, ?ADVERTISE_EXPECTED}
                    end
            end
    end;
check_advertise(_) ->
    {error, ?ADVERTISE_EXPECTED}.

%% A DNS host name (RFC 1123, with `_' as resolvers accept it): dot-separated
%% labels of letters, digits, `-' and `_', 1..63 characters each, not
%% starting or ending with `-', the last one not all digits, at most 253
%% characters, an optional final dot.
host_name(Str) ->
    Name = case lists:suffix(".", Str) of
               true -> lists:droplast(Str);
               false -> Str
           end,
    Labels = string:split(Name, ".", all),
    %% An all-numeric last label would be read as an address ("10.5").
    Name =/= "" andalso length(Name) =< 253 andalso lists:all(fun label/1, Labels) andalso
        not lists:all(fun(C) -> C >= $0 andalso C =< $9 end, lists:last(Labels)).

label(L) ->
    L =/= "" andalso length(L) =< 63 andalso hd(L) =/= $- andalso lists:last(L) =/= $- andalso
        lists:all(fun(C) -> (C >= $a andalso C =< $z) orelse (C >= $A andalso C =< $Z) orelse
                                (C >= $0 andalso C =< $9) orelse C =:= $- orelse C =:= $_
                  end, L).

valid_ip_tuple({_, _, _, _} = T) -> all_in_range(tuple_to_list(T), 255);
valid_ip_tuple({_, _, _, _, _, _, _, _} = T) -> all_in_range(tuple_to_list(T), 65535);
valid_ip_tuple(_) -> false.

all_in_range(L, Max) ->
    lists:all(fun(X) -> is_integer(X) andalso X >= 0 andalso X =< Max end, L).

check_path(undefined) ->
    {ok, undefined};
check_path(V) when is_binary(V); is_list(V) ->
    case to_string(V) of
        "" -> {error, "a non-empty file name"};
        error -> {error, "a file name string"};
        Str -> {ok, Str}
    end;
check_path(_) ->
    {error, "a file name string"}.

to_string(V) ->
    try unicode:characters_to_list(V) of
        Str when is_list(Str) -> Str;
        _ -> error
    catch
        error:_ -> error
    end.
