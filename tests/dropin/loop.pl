# loop.pl DSN USER N — N times: DBI->connect (DBD::Pg), a statement with a
# placeholder executed twice (DBD::Pg prepares it on the server the second
# time, as dbdpg_p<pid>_<n>), a transaction, disconnect. Prints one summary
# line: ok=N pids=P,... apps=A,... errors=[...]
use strict;
use warnings;
use DBI;

my ($dsn, $user, $n) = @ARGV;
my ($ok, %pids, %apps, @errs) = (0);
for my $i (1 .. $n) {
    my $done = eval {
        my $dbh = DBI->connect($dsn, $user, '', {RaiseError => 1, PrintError => 0, AutoCommit => 1});
        my $sth = $dbh->prepare('select pg_backend_pid(), current_setting(?), pg_sleep(0.005)');
        for (1 .. 2) {
            $sth->execute('application_name');
            my @r = $sth->fetchrow_array;
            $pids{$r[0]} = 1;
            $apps{$r[1]} = 1;
        }
        $sth->finish;
        $dbh->begin_work;
        $dbh->do('select txid_current()');
        $dbh->commit;
        $dbh->disconnect;
        1;
    };
    if ($done) { $ok++ } else { my $e = $@; $e =~ s/\s+$//; push @errs, $e }
}
printf "ok=%d pids=%s apps=%s errors=[%s]\n", $ok, join(',', sort keys %pids),
    join(',', sort keys %apps), join(' | ', @errs[0 .. ($#errs < 2 ? $#errs : 2)]);
