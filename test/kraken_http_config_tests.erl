%% @doc EUnit tests of the options of issue 11: http_port (-1, off, unless
%% set; like redis_port, its range and default are the engine's table's) and
%% engine_restarts (sent by kraken_engine, not a user option).
-module(kraken_http_config_tests).

-include_lib("eunit/include/eunit.hrl").

http_port_off_by_default_test() ->
    {ok, Config} = kraken_config:validate([]),
    ?assertEqual(-1, proplists:get_value(http_port, Config)),
    ?assertEqual(-1, proplists:get_value(http_port, kraken_config:engine_options(Config))).

http_port_sent_when_set_test() ->
    {ok, Config} = kraken_config:validate([{http_port, 9102}]),
    ?assertEqual(9102, proplists:get_value(http_port, kraken_config:engine_options(Config))),
    {ok, Zero} = kraken_config:validate([{http_port, 0}]),
    ?assertEqual(0, proplists:get_value(http_port, kraken_config:engine_options(Zero))).

http_port_bad_values_test_() ->
    [?_assertEqual({error, "kraken: bad value for option http_port: " ++ Shown ++
                        " (expected an integer -1..65535)"},
                   kraken_config:validate([{http_port, V}]))
     || {V, Shown} <- [{-2, "-2"}, {65536, "65536"}, {"80", "\"80\""}, {on, "on"}]].

engine_restarts_is_not_a_user_option_test() ->
    {ok, Config} = kraken_config:validate([]),
    ?assertNot(lists:keymember(engine_restarts, 1, Config)),
    ?assertNot(lists:keymember(engine_restarts, 1, kraken_config:engine_options(Config))).

app_src_has_http_port_test() ->
    _ = application:load(kraken),
    ?assertEqual({ok, -1}, application:get_env(kraken, http_port)).
