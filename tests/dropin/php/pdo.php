<?php
// PDO_pgsql: server-side prepared statement (pdo_stmt_00000001 in every
// request), a transaction, then the handle is dropped.
require __DIR__ . '/conf.php';
header('Content-Type: text/plain');
try {
    $db = new PDO($DT_PDO_DSN, $DT_USER, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $db->beginTransaction();
    $st = $db->prepare('select pg_backend_pid(), current_setting(?), pg_sleep(0.005)');
    $st->execute(['application_name']);
    $row = $st->fetch(PDO::FETCH_NUM);
    $st = null;
    $db->commit();
    $db = null;
    echo 'ok pid=', $row[0], ' app=', $row[1], ' worker=', getmypid(), "\n";
} catch (PDOException $e) {
    http_response_code(500);
    echo 'error: ', $e->getMessage(), "\n";
}
