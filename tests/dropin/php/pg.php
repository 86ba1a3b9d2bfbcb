<?php
// ext/pgsql: pg_connect, a named prepared statement, pg_close — every request.
require __DIR__ . '/conf.php';
header('Content-Type: text/plain');
$c = @pg_connect($DT_CONNINFO);
if ($c === false) {
    http_response_code(500);
    echo 'error connect: ', error_get_last()['message'] ?? '?', "\n";
    exit;
}
// The same name in every request: a session that comes back with it still
// prepared fails here ("already exists").
if (@pg_prepare($c, 'dt_stmt', 'select pg_backend_pid(), current_setting($1), pg_sleep(0.005)') === false
    || ($r = @pg_execute($c, 'dt_stmt', ['application_name'])) === false) {
    http_response_code(500);
    echo 'error query: ', pg_last_error($c), "\n";
    exit;
}
$row = pg_fetch_row($r);
if (pg_transaction_status($c) !== PGSQL_TRANSACTION_IDLE) {
    http_response_code(500);
    echo 'error: not idle: ', pg_transaction_status($c), "\n";
    exit;
}
$host = pg_host($c);
pg_close($c);
echo 'ok pid=', $row[0], ' app=', $row[1], ' host=', $host, ' worker=', getmypid(), "\n";
