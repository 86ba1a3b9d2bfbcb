# loop.rb CONNINFO N — N times: PG.connect (ruby-pg: always PQconnectStart +
# polling), a named prepared statement, PG::Connection#close. Prints one
# summary line: ok=N pids=P,... apps=A,... errors=[...]
require 'pg'
ci, n = ARGV[0], ARGV[1].to_i
ok = 0
pids = {}
apps = {}
errs = []
n.times do
  c = nil
  begin
    c = PG.connect(ci)
    # The same name in every connection: a session that comes back with it
    # still prepared fails here ("already exists").
    c.prepare('dt_s', 'select pg_backend_pid(), current_setting($1), pg_sleep(0.005)')
    r = c.exec_prepared('dt_s', ['application_name'])
    pids[r.getvalue(0, 0)] = 1
    apps[r.getvalue(0, 1)] = 1
    raise "not idle after the query: #{c.transaction_status}" unless c.transaction_status == PG::PQTRANS_IDLE
    ok += 1
  rescue StandardError => e
    errs << "#{e.class}: #{e.message.strip}"
  ensure
    c&.close
  end
end
puts "ok=#{ok} pids=#{pids.keys.join(',')} apps=#{apps.keys.join(',')} errors=#{errs.first(3).inspect}"
