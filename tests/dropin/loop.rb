# loop.rb CONNINFO N — N times: PG.connect (ruby-pg: always PQconnectStart +
# polling), a named prepared statement, every 10th time PG::Connection#reset
# and a query, PG::Connection#close. Prints one summary line:
# ok=N resets=R pids=P,... apps=A,... errors=[...]
require 'pg'
ci, n = ARGV[0], ARGV[1].to_i
ok = 0
pids = {}
apps = {}
errs = []
resets = 0
n.times do |i|
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
    if (i % 10).zero?
      # PG::Connection#reset (PQresetStart + PQresetPoll): a working session again.
      c.reset
      r = c.exec('select pg_backend_pid(), current_setting(\'application_name\')')
      pids[r.getvalue(0, 0)] = 1
      apps[r.getvalue(0, 1)] = 1
      resets += 1
    end
    ok += 1
  rescue StandardError => e
    errs << "#{e.class}: #{e.message.strip}"
  ensure
    c&.close
  end
end
puts "ok=#{ok} resets=#{resets} pids=#{pids.keys.join(',')} apps=#{apps.keys.join(',')} errors=#{errs.first(3).inspect}"
