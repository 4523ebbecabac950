%% @doc EUnit tests of kraken_config: defaults, normalisation, every bad
%% value and the `octopus' section.
-module(kraken_config_tests).

-include_lib("eunit/include/eunit.hrl").

ok(Env) ->
    {ok, Config} = kraken_config:validate(Env),
    Config.

defaults_test() ->
    Config = ok([]),
    ?assertEqual(<<"0.0.0.0">>, proplists:get_value(listen_ip, Config)),
    ?assertEqual(12355, proplists:get_value(tcp_server_port, Config)),
    ?assertEqual(1000, proplists:get_value(max_tcp_clients, Config)),
    ?assertEqual(4, proplists:get_value(num_router_shards, Config)),
    ?assertEqual(10000, proplists:get_value(messages_stored_per_router_shard, Config)),
    ?assertEqual(info, proplists:get_value(log_level, Config)),
    ?assertEqual(undefined, proplists:get_value(pid_file, Config)),
    ?assertEqual(3600, proplists:get_value(client_idle_timeout_secs, Config)).

app_src_matches_defaults_test() ->
    ok = case application:load(kraken) of
             ok -> ok;
             {error, {already_loaded, kraken}} -> ok
         end,
    {ok, Env} = application:get_key(kraken, env),
    [?assertEqual({Name, Default}, {Name, proplists:get_value(Name, Env, missing)})
     || {Name, Default} <- kraken_config:defaults(),
        %% set_env at runtime (e.g. log_level) also shows in get_key.
        Name =/= log_level].

engine_options_test() ->
    Options = kraken_config:engine_options(ok([])),
    ?assertEqual(lists:sort([listen_ip, tcp_server_port, max_tcp_clients, num_router_shards,
                             messages_stored_per_router_shard, router_min_fanout_to_warn,
                             router_min_publish_to_topics_to_warn, log_level,
                             client_idle_timeout_secs, max_request_bytes,
                             max_client_queue_bytes, bytes_stored_per_router_shard,
                             max_memory_bytes, redis_port, http_port]),
                 lists:sort([Name || {Name, _} <- Options])),
    %% redis_password is sent only when set
    Set = kraken_config:engine_options(ok([{redis_password, "pw"}])),
    ?assertEqual({redis_password, <<"pw">>}, lists:keyfind(redis_password, 1, Set)).

%% The ranges and defaults are the engine's (kraken_engine --options, from
%% c_src/config.c), not a second copy: the table the build wrote is what
%% the engine prints, and validation follows it at both ends of each range.
engine_table_test() ->
    {ok, Table} = kraken_config:engine_table(),
    {ok, Engine} = kraken_engine:executable([]),
    {ok, Tokens, _} = erl_scan:string(os:cmd(Engine ++ " --options")),
    Printed = [begin {ok, T} = erl_parse:parse_term(Ts), T end
               || Ts <- split_dots(Tokens)],
    ?assertEqual(Printed, Table),
    ?assertMatch({tcp_server_port, integer, 0, 65535, 12355},
                 lists:keyfind(tcp_server_port, 1, Table)),
    Ints = [E || {_, integer, _, _, _} = E <- Table],
    ?assert(length(Ints) >= 10),
    [begin
         ?assertEqual(Min, proplists:get_value(Name, ok([{Name, Min}]))),
         ?assertEqual(Max, proplists:get_value(Name, ok([{Name, Max}]))),
         ?assertEqual(Default, proplists:get_value(Name, ok([]))),
         Expected = lists:flatten(io_lib:format("(expected an integer ~b..~b)", [Min, Max])),
         [begin
              {error, Msg} = kraken_config:validate([{Name, Bad}]),
              ?assertEqual({Name, Bad, true}, {Name, Bad, lists:suffix(Expected, Msg)})
          end || Bad <- [Min - 1, Max + 1]]
     end || {Name, integer, Min, Max, Default} <- Ints,
            Name =/= engine_restarts, Name =/= cluster_wait].   % internal: set by the node

split_dots(Tokens) ->
    split_dots(Tokens, [], []).

split_dots([], [], Acc) -> lists:reverse(Acc);
split_dots([{dot, _} = D | T], Cur, Acc) -> split_dots(T, [], [lists:reverse([D | Cur]) | Acc]);
split_dots([H | T], Cur, Acc) -> split_dots(T, [H | Cur], Acc).

listen_ip_test_() ->
    [?_assertEqual(Expected, proplists:get_value(listen_ip, ok([{listen_ip, In}])))
     || {In, Expected} <- [{any, <<"0.0.0.0">>},
                           {"any", <<"0.0.0.0">>},
                           {{127, 0, 0, 1}, <<"127.0.0.1">>},
                           {"127.0.0.1", <<"127.0.0.1">>},
                           {<<"10.1.2.3">>, <<"10.1.2.3">>},
                           {"::1", <<"::1">>},
                           {<<"::">>, <<"::">>},
                           {{0, 0, 0, 0, 0, 0, 0, 1}, <<"::1">>},
                           {{0, 0, 0, 0, 0, 0, 0, 0}, <<"::">>},
                           {"fe80::1:2", <<"fe80::1:2">>}]].

%% cluster_advertise: an address in its usual text, a host name as given
%% (resolved at start: advertise_test_), unset by default.
cluster_join_only_test_() ->
    [?_assertEqual(false, proplists:get_value(cluster_join_only, ok([]))),
     ?_assertEqual(true, proplists:get_value(cluster_join_only,
                                             ok([{cluster_join_only, true}])))].

cluster_advertise_test_() ->
    [?_assertEqual(undefined, proplists:get_value(cluster_advertise, ok([])))
     | [?_assertEqual(Expected, proplists:get_value(cluster_advertise,
                                                    ok([{cluster_advertise, In}])))
        || {In, Expected} <- [{"127.0.0.7", <<"127.0.0.7">>},
                              {<<"10.0.0.5">>, <<"10.0.0.5">>},
                              {{10, 0, 0, 5}, <<"10.0.0.5">>},
                              {"::1", <<"::1">>},
                              {{8193, 3512, 0, 0, 0, 0, 0, 1}, <<"2001:db8::1">>},
                              {web1, <<"web1">>},
                              {"web1", <<"web1">>},
                              {<<"kraken-1.example.com">>, <<"kraken-1.example.com">>},
                              {"web1.example.com.", <<"web1.example.com.">>},
                              {"my_host.internal", <<"my_host.internal">>}]]].

%% The host name is resolved once at start (IPv4 first); one that does not
%% resolve is an error that names it; an address is left as it is.
advertise_test_() ->
    Config = fun(V) -> [{listen_ip, <<"0.0.0.0">>}, {cluster_advertise, V}] end,
    [?_assertEqual({ok, Config(undefined)}, kraken_cluster_ops:advertise(Config(undefined))),
     ?_assertEqual({ok, Config(<<"10.0.0.5">>)},
                   kraken_cluster_ops:advertise(Config(<<"10.0.0.5">>))),
     ?_assertEqual({ok, Config(<<"::1">>)}, kraken_cluster_ops:advertise(Config(<<"::1">>))),
     ?_assertEqual({ok, Config(<<"127.0.0.1">>)},
                   kraken_cluster_ops:advertise(Config(<<"localhost">>))),
     ?_test(begin
                {error, Msg} = kraken_cluster_ops:advertise(Config(<<"no-such-host.invalid">>)),
                Prefix = "kraken: cluster_advertise no-such-host.invalid does not resolve: ",
                ?assertEqual(Prefix, lists:sublist(Msg, length(Prefix))),
                ?assertEqual(nomatch, string:find(Msg, "\n"))
            end)].

%% When the engine may not be reachable at the advertised address: another
%% address than the one it listens on (a warning at start: legitimate
%% behind NAT), or an IPv6 one while it listens on IPv4 only.
listen_mismatch_test_() ->
    [?_assertEqual(Expected, kraken_cluster_ops:listen_mismatch(Ip, Host))
     || {Ip, Host, Expected} <- [{<<"0.0.0.0">>, <<"10.0.0.5">>, false},
                                 {<<"::">>, <<"10.0.0.5">>, false},
                                 {<<"::">>, <<"::1">>, false},
                                 {<<"10.0.0.5">>, <<"10.0.0.5">>, false},
                                 {<<"127.0.0.1">>, <<"127.0.0.8">>, other_address},
                                 {<<"10.0.0.5">>, <<"203.0.113.9">>, other_address},
                                 {<<"0.0.0.0">>, <<"::1">>, ipv6_on_ipv4}]].

normalisation_test_() ->
    [?_assertEqual(warn, proplists:get_value(log_level, ok([{log_level, warning}]))),
     ?_assertEqual(warn, proplists:get_value(log_level, ok([{log_level, warn}]))),
     ?_assertEqual(debug, proplists:get_value(log_level, ok([{log_level, debug}]))),
     ?_assertEqual(0, proplists:get_value(tcp_server_port, ok([{tcp_server_port, 0}]))),
     ?_assertEqual(65535, proplists:get_value(tcp_server_port,
                                              ok([{tcp_server_port, 65535}]))),
     ?_assertEqual("/tmp/k.pid", proplists:get_value(pid_file,
                                                     ok([{pid_file, <<"/tmp/k.pid">>}]))),
     ?_assertEqual("/tmp/k.log", proplists:get_value(log_file,
                                                     ok([{log_file, "/tmp/k.log"}])))].

bad_values_test_() ->
    Bad = [{listen_ip, [foo, "localhost", "1.2.3", "1.2.3.4.5", <<"::g">>, {1, 2, 3},
                        {256, 0, 0, 1}, {-1, 0, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 65536},
                        {a, b, c, d}, 12, "", [foo]]},
           {tcp_server_port, [-1, 65536, 70000, "12355", 1.5, foo]},
           {max_tcp_clients, [0, -5, "10", foo, 2.0]},
           {num_router_shards, [0, -1, "4", four]},
           {messages_stored_per_router_shard, [0, -1, "10", x]},
           {router_min_fanout_to_warn, [0, -1, "1000", x]},
           {router_min_publish_to_topics_to_warn, [0, -1, "1000", x]},
           {client_idle_timeout_secs, [0, -1, "3600", infinity]},
           {max_request_bytes, [0, 1023, "16777216", x, (1 bsl 31) + 1]},
           {max_client_queue_bytes, [0, 1023, "1", x, (1 bsl 31) + 1]},
           {bytes_stored_per_router_shard, [0, 1023, "67108864", x]},
           {num_router_shards, [65537]},
           {messages_stored_per_router_shard, [100000001]},
           {log_level, [verbose, "debug", <<"info">>, 1, notice, critical]},
           {pid_file, ["", <<>>, 42, foo, {file}]},
           {log_file, ["", <<>>, 42, foo]},
           {engine_executable, ["", 42, foo]},
           {cluster_advertise, ["", <<>>, 42, any, "0.0.0.0", <<"::">>, {0, 0, 0, 0},
                                {0, 0, 0, 0, 0, 0, 0, 0}, {256, 0, 0, 1}, "bad host!",
                                "web1..example.com", "-web1", "web1-", "10.5", "1.2.3.999",
                                "a:b", "[::1]", [foo], {web1}]},
           {cluster_join_only, [yes, 1, "true", <<"false">>, undefined]}],
    [{lists:flatten(io_lib:format("~p = ~0p", [Name, Value])),
      ?_test(bad(Name, Value))}
     || {Name, Values} <- Bad, Value <- Values].

bad(Name, Value) ->
    {error, Msg} = kraken_config:validate([{Name, Value}]),
    Prefix = lists:flatten(io_lib:format("kraken: bad value for option ~s: ~0tp (expected ",
                                         [Name, Value])),
    ?assertEqual(Prefix, lists:sublist(Msg, length(Prefix))),
    ?assertEqual(nomatch, string:find(Msg, "\n")).

message_example_test() ->
    ?assertEqual({error, "kraken: bad value for option tcp_server_port: 70000 "
                         "(expected an integer 0..65535)"},
                 kraken_config:validate([{tcp_server_port, 70000}])).

%% An unknown option refuses the start, naming the closest known one.
unknown_options_are_refused_test_() ->
    [?_assertEqual({error, "kraken: unknown option tcp_server_prot (did you mean "
                           "tcp_server_port?)"},
                   kraken_config:validate([{tcp_server_prot, 13020}])),
     ?_assertEqual({error, "kraken: unknown option log_levle (did you mean log_level?)"},
                   kraken_config:validate([{log_levle, debug}])),
     ?_assertEqual({error, "kraken: unknown option max_tcp_client (did you mean "
                           "max_tcp_clients?)"},
                   kraken_config:validate([{max_tcp_client, 5}])),
     ?_assertEqual({error, "kraken: unknown option no_such_option (the options are listed "
                           "in README.md, Configuration)"},
                   kraken_config:validate([{no_such_option, 1}])),
     ?_assertEqual(none, kraken_config:closest(xyz, [tcp_server_port])),
     ?_assertEqual({ok, pid_file}, kraken_config:closest("pidfile", [log_file, pid_file]))].

%% The options the original accepted that this server does not use: a
%% warning, not a refusal.
legacy_options_test() ->
    _ = application:load(kraken),
    ok = application:set_env(kraken, logging_module, lager),
    try
        {ok, Config, Warnings} = kraken_config:read(),
        ?assertEqual(false, lists:keymember(logging_module, 1, Config)),
        ?assertEqual(["kraken: option logging_module is not used by this server; ignored"],
                     Warnings)
    after
        application:unset_env(kraken, logging_module)
    end.

log_level_any_case_test_() ->
    [?_assertEqual(L, proplists:get_value(log_level, ok([{log_level, In}])))
     || {In, L} <- [{'DEBUG', debug}, {'Info', info}, {'WARNING', warn}, {'Error', error}]].

check_log_level_test() ->
    ?assertEqual({ok, warn}, kraken_config:check_log_level(warning)),
    ?assertMatch({error, _}, kraken_config:check_log_level(loud)),
    ?assertEqual(warning, kraken_config:logger_level(warn)),
    ?assertEqual(debug, kraken_config:logger_level(debug)).

%% load/0 reads the application environment and the `octopus' section;
%% a kraken value that differs from its default wins over octopus.
load_test_() ->
    {setup,
     fun() ->
             _ = application:load(kraken),
             Saved = application:get_all_env(kraken),
             _ = kraken_config:load(),          % loads the octopus stand-in
             SavedOctopus = application:get_all_env(octopus),
             {Saved, SavedOctopus}
     end,
     fun({Saved, SavedOctopus}) ->
             [application:unset_env(octopus, K) || {K, _} <- application:get_all_env(octopus)],
             [application:set_env(octopus, K, V) || {K, V} <- SavedOctopus],
             [application:set_env(kraken, K, V) || {K, V} <- Saved]
     end,
     [fun() ->
              ok = application:set_env(kraken, tcp_server_port, 4242),
              ok = application:set_env(kraken, num_router_shards, 4),
              ok = application:set_env(octopus, tcp_server_port, 4343),
              ok = application:set_env(octopus, num_router_shards, 8),
              {ok, Config} = kraken_config:load(),
              ?assertEqual(4242, proplists:get_value(tcp_server_port, Config)),
              ?assertEqual(8, proplists:get_value(num_router_shards, Config))
      end,
      fun() ->
              ok = application:set_env(octopus, max_tcp_clients, 0),
              ?assertMatch({error, "kraken: bad value for option max_tcp_clients: 0" ++ _},
                           kraken_config:load()),
              application:unset_env(octopus, max_tcp_clients)
      end]}.

%% -kraken / -octopus flags (init:get_argument/1 values) must each give
%% exactly a name and a value.
check_flags_test() ->
    ?assertEqual(ok, kraken_config_args:check_flags([])),
    ?assertEqual(ok, kraken_config_args:check_flags([{kraken, [["tcp_server_port", "1"],
                                                          ["log_level", "warn"]]},
                                                {octopus, [["listen_ip", "any"]]}])),
    ?assertEqual({error, "kraken: bad command-line flag -kraken tcp_server_port "
                         "(expected -kraken NAME VALUE)"},
                 kraken_config_args:check_flags([{kraken, [["log_level", "warn"],
                                                      ["tcp_server_port"]]}])),
    ?assertEqual({error, "kraken: bad command-line flag -kraken (expected -kraken NAME VALUE)"},
                 kraken_config_args:check_flags([{kraken, [[]]}])),
    ?assertEqual({error, "kraken: bad command-line flag -octopus a b c "
                         "(expected -octopus NAME VALUE)"},
                 kraken_config_args:check_flags([{kraken, [["a", "b"]]},
                                            {octopus, [["a", "b", "c"]]}])).

%% The command line, as init:get_arguments/0 gives it: values OTP could not
%% parse are refused naming the option; a negative number, which erl takes
%% for a flag, is joined to its option again.
check_command_line_test_() ->
    C = fun kraken_config_args:check_command_line/1,
    [?_assertEqual({ok, []}, C([{noshell, []}, {kraken, ["tcp_server_port", "1"]},
                                {kraken, ["listen_ip", "\"::1\""]}])),
     ?_assertEqual({error, "kraken: bad command-line value for option listen_ip: 127.0.0.1 "
                           "(-kraken values are Erlang terms: quote strings, e.g. "
                           "-kraken listen_ip '\"127.0.0.1\"')"},
                   C([{kraken, ["listen_ip", "127.0.0.1"]}])),
     ?_assertEqual({ok, [{kraken, max_tcp_clients, -5}, {octopus, tcp_server_port, -1}]},
                   C([{kraken, ["max_tcp_clients"]}, {'5', []}, {noshell, []},
                      {octopus, ["tcp_server_port"]}, {'1', []}])),
     ?_assertEqual({error, "kraken: bad command-line flag -kraken max_tcp_clients "
                           "(expected -kraken NAME VALUE)"},
                   C([{kraken, ["max_tcp_clients"]}, {noshell, []}])),
     ?_assertEqual({error, "kraken: bad command-line flag -kraken max_tcp_clients "
                           "(expected -kraken NAME VALUE)"},
                   C([{kraken, ["max_tcp_clients"]}, {'5', ["x"]}]))].

%% read/0 refuses a flag without its value; this node has no -kraken flags.
read_checks_flags_test() ->
    ?assertEqual(error, init:get_argument(kraken)),
    ?assertMatch({ok, _, _}, kraken_config:read()).

%% A -config file erl could not read: one line instead of erl's crash dump.
check_config_file_test_() ->
    Dir = filename:join(["/tmp", "kraken_config_test_" ++ os:getpid()]),
    Files = [{"good", "%% comment\n[{kraken, [{tcp_server_port, 0}]}].\n%% end\n"},
             {"no_dot", "[{kraken, [{tcp_server_port, 0}]}]\n"},
             {"empty", ""},
             {"syntax", "[{kraken,\n [{tcp_server_port 0}]}].\n"},
             {"string", "[{kraken, [{pid_file, \"/tmp/x}]}].\n"},
             {"two_terms", "[{kraken, []}].\n[{octopus, []}].\n"},
             {"not_list", "{kraken, []}.\n"},
             {"sub/sys", "[\"inc\", {kraken, []}].\n"},
             {"sub/inc", "[{kraken, []}]\n"},
             {"sub2/sys", "[\"missing\"].\n"}],
    {setup,
     fun() ->
             [begin
                  F = filename:join(Dir, Name ++ ".config"),
                  ok = filelib:ensure_dir(F),
                  ok = file:write_file(F, Text)
              end || {Name, Text} <- Files],
             ok = file:make_dir(filename:join(Dir, "a_dir.config"))
     end,
     fun(_) -> os:cmd("rm -rf '" ++ Dir ++ "'") end,
     fun(_) ->
             F = fun(Name) -> filename:join(Dir, Name) end,
             Cannot = fun(Name, Reason) ->
                              {error, "kraken: cannot read config file " ++ F(Name) ++
                                   ".config: " ++ Reason}
                      end,
             OneList = "expected one list ended by a dot, "
                       "e.g. [{kraken, [{tcp_server_port, 12355}]}].",
             [?_assertEqual(ok, kraken_config_args:check_config_file(F("good"))),
              ?_assertEqual(ok, kraken_config_args:check_config_file(F("good.config"))),
              ?_assertEqual(Cannot("no_dot", "no ending <dot> found"),
                            kraken_config_args:check_config_file(F("no_dot"))),
              ?_assertEqual(Cannot("no_dot", "no ending <dot> found"),
                            kraken_config_args:check_config_file(F("no_dot.config"))),
              ?_assertEqual(Cannot("empty", "no ending <dot> found"),
                            kraken_config_args:check_config_file(F("empty"))),
              ?_assertEqual(Cannot("syntax", "line 2: syntax error before: 0"),
                            kraken_config_args:check_config_file(F("syntax"))),
              ?_assertEqual(Cannot("string", "no ending <dot> found"),
                            kraken_config_args:check_config_file(F("string"))),
              ?_assertEqual(Cannot("two_terms", OneList),
                            kraken_config_args:check_config_file(F("two_terms"))),
              ?_assertEqual(Cannot("not_list", OneList),
                            kraken_config_args:check_config_file(F("not_list"))),
              ?_assertEqual({error, "kraken: config file " ++ F("missing") ++ " not found"},
                            kraken_config_args:check_config_file(F("missing"))),
              ?_assertEqual(Cannot("a_dir", "illegal operation on a directory"),
                            kraken_config_args:check_config_file(F("a_dir"))),
              %% The files a sys.config names are read too.
              ?_assertEqual(Cannot("sub/inc", "no ending <dot> found"),
                            kraken_config_args:check_config_file(F("sub/sys"))),
              ?_assertEqual({error, "kraken: config file missing.config named in " ++
                                 F("sub2/sys.config") ++ " not found"},
                            kraken_config_args:check_config_file(F("sub2/sys")))]
     end}.
