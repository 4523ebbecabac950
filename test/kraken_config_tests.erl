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
    ?assertEqual([listen_ip, tcp_server_port, max_tcp_clients, num_router_shards,
                  messages_stored_per_router_shard, router_min_fanout_to_warn,
                  router_min_publish_to_topics_to_warn, log_level,
                  client_idle_timeout_secs, max_request_bytes,
                  max_client_queue_bytes],
                 [Name || {Name, _} <- Options]).

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
           {max_request_bytes, [0, 1023, "16777216", x]},
           {max_client_queue_bytes, [0, 1023, "1", x]},
           {log_level, [verbose, "debug", <<"info">>, 1, notice, critical]},
           {pid_file, ["", <<>>, 42, foo, {file}]},
           {log_file, ["", <<>>, 42, foo]},
           {engine_executable, ["", 42, foo]}],
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

unknown_options_are_ignored_test() ->
    Config = ok([{no_such_option, 1}]),
    ?assertEqual(false, lists:keymember(no_such_option, 1, Config)).

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
