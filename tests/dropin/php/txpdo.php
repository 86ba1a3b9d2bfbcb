<?php
// Transaction mode, PDO_pgsql: a persistent connection (PDO::ATTR_PERSISTENT,
// one per server process for its life), one transaction of server-side
// prepared statements (PDO names them pdo_stmt_N, counting on per connection,
// and DEALLOCATEs each when it is replaced), each carrying the request's token.
require __DIR__ . '/conf.php';
header('Content-Type: text/plain');
try {
    $db = new PDO($DT_PDO_DSN, $DT_USER, null, [
        PDO::ATTR_PERSISTENT => true,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    ]);
    $t = $DT_TABLE;
    $tok = getmypid() . '-' . bin2hex(random_bytes(6));
    $q = function ($sql, $params) use ($db) {
        $st = $db->prepare($sql);
        $st->execute($params);
        return $st->fetch(PDO::FETCH_NUM);
    };
    $db->beginTransaction();
    [$echo, $pid, $xid, $app] = $q(
        "select ?::text, pg_backend_pid(), txid_current(), current_setting('application_name')",
        [$tok . '-a']
    );
    if ($echo !== $tok . '-a') {
        throw new Exception("answer $echo is not the token $tok-a");
    }
    $same = function ($row, $what) use ($pid, $xid) {
        if ($row[1] !== $pid || $row[2] !== $xid) {
            throw new Exception("$what ran on backend $row[1] xid $row[2], not $pid xid $xid");
        }
    };
    $row = $q("insert into $t (worker, token, state) values (?, ?, 'open') "
        . 'returning token, pg_backend_pid(), txid_current()', [getmypid(), $tok]);
    $same($row, 'insert');
    $row = $q("select ?::text, pg_backend_pid(), txid_current(), count(*) from $t "
        . "where token <> ? and state = 'open'", [$tok . '-c', $tok]);
    $same($row, 'read of others');
    if ($row[0] !== $tok . '-c' || (int)$row[3] !== 0) {
        throw new Exception("sees $row[3] uncommitted rows of others (answer $row[0])");
    }
    $row = $q("select ?::text, pg_backend_pid(), txid_current(), count(*) from $t "
        . "where token = ? and state = 'open'", [$tok . '-d', $tok]);
    $same($row, 'read of its own');
    if ($row[0] !== $tok . '-d' || (int)$row[3] !== 1) {
        throw new Exception("sees $row[3] of its own open rows (answer $row[0])");
    }
    $row = $q("update $t set state = 'done' where token = ? "
        . 'returning ?::text, pg_backend_pid(), txid_current()', [$tok, $tok . '-e']);
    $same($row, 'update');
    $db->commit();
    echo 'ok pid=', $pid, ' app=', $app, ' worker=', getmypid(), "\n";
} catch (Throwable $e) {
    http_response_code(500);
    echo 'error: ', $e->getMessage(), "\n";
}
