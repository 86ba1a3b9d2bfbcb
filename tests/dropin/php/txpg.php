<?php
// Transaction mode, ext/pgsql: pg_pconnect (one connection per server process
// for its life), one transaction of several statements, each carrying the
// request's token: its row inserted, read back, marked done, committed.
require __DIR__ . '/conf.php';
header('Content-Type: text/plain');

function dt_fail($msg)
{
    http_response_code(500);
    echo 'error: ', $msg, "\n";
    exit;
}

$c = @pg_pconnect($DT_CONNINFO);
if ($c === false) {
    dt_fail('connect: ' . (error_get_last()['message'] ?? '?'));
}
$q = function ($sql, $params) use ($c) {
    $r = @pg_query_params($c, $sql, $params);
    if ($r === false) {
        dt_fail('query: ' . pg_last_error($c));
    }
    return pg_fetch_row($r);
};
$t = $DT_TABLE;
$tok = getmypid() . '-' . bin2hex(random_bytes(6));
if (@pg_query($c, 'begin') === false) {
    dt_fail('begin: ' . pg_last_error($c));
}
[$echo, $pid, $xid, $app] = $q(
    "select \$1::text, pg_backend_pid(), txid_current(), current_setting('application_name')",
    [$tok . '-a']
);
if ($echo !== $tok . '-a') {
    dt_fail("answer $echo is not the token $tok-a");
}
$same = function ($row, $what) use ($pid, $xid) {
    if ($row[1] !== $pid || $row[2] !== $xid) {
        dt_fail("$what ran on backend $row[1] xid $row[2], not $pid xid $xid");
    }
};
$row = $q("insert into $t (worker, token, state) values (\$1, \$2, 'open') "
    . 'returning token, pg_backend_pid(), txid_current()', [getmypid(), $tok]);
$same($row, 'insert');
$row = $q("select \$1::text, pg_backend_pid(), txid_current(), count(*) from $t "
    . "where token <> \$2 and state = 'open'", [$tok . '-c', $tok]);
$same($row, 'read of others');
if ($row[0] !== $tok . '-c' || $row[3] !== '0') {
    dt_fail("sees $row[3] uncommitted rows of others (answer $row[0])");
}
$row = $q("select \$1::text, pg_backend_pid(), txid_current(), count(*) from $t "
    . "where token = \$2 and state = 'open'", [$tok . '-d', $tok]);
$same($row, 'read of its own');
if ($row[0] !== $tok . '-d' || $row[3] !== '1') {
    dt_fail("sees $row[3] of its own open rows (answer $row[0])");
}
$row = $q("update $t set state = 'done' where token = \$1 "
    . 'returning $2::text, pg_backend_pid(), txid_current()', [$tok, $tok . '-e']);
$same($row, 'update');
if (@pg_query($c, 'commit') === false) {
    dt_fail('commit: ' . pg_last_error($c));
}
if (pg_transaction_status($c) !== PGSQL_TRANSACTION_IDLE) {
    dt_fail('not idle: ' . pg_transaction_status($c));
}
echo 'ok pid=', $pid, ' app=', $app, ' host=', pg_host($c), ' worker=', getmypid(), "\n";
