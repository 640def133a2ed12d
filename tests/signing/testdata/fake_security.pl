#!/usr/bin/perl
# A stand-in for macOS security(1) in tests: logs every argv and every `-i` stdin line, keeps keychains,
# imported identities and the user search list as files under $FAKE_SECURITY_STATE, and answers in the
# formats the real tool prints (written from its documented behaviour and source, not captured from a
# Mac). Failure injection: FAKE_SECURITY_FAIL=<command>.
use strict;
use warnings;

my $state = $ENV{FAKE_SECURITY_STATE} or die "FAKE_SECURITY_STATE not set\n";

sub logline {
  open(my $f, '>>', "$state/log") or die;
  print $f @_, "\n";
  close $f;
}

sub slurp { my ($p) = @_; open(my $f, '<', $p) or return undef; local $/; my $s = <$f>; close $f; return $s; }
sub spew { my ($p, $s) = @_; open(my $f, '>', $p) or die "$p: $!"; print $f $s; close $f; }

# The security tool's own line splitter: whitespace, '...' or "..." with backslash escapes.
sub split_line {
  my ($line) = @_;
  my @args;
  my ($cur, $st, $q) = (undef, 'ws', '');
  for my $c (split //, $line) {
    if ($st eq 'ws') {
      next if $c =~ /\s/;
      if ($c eq '"' || $c eq "'") { $q = $c; $st = 'q'; $cur = ''; next; }
      $st = 'arg'; $cur = '';
    }
    if ($st eq 'arg') {
      if ($c eq '\\') { $st = 'arg_esc'; next; }
      if ($c =~ /\s/) { push @args, $cur; $st = 'ws'; next; }
      $cur .= $c; next;
    }
    if ($st eq 'arg_esc') { $cur .= $c; $st = 'arg'; next; }
    if ($st eq 'q') {
      if ($c eq '\\') { $st = 'q_esc'; next; }
      if ($c eq $q) { push @args, $cur; $st = 'ws'; next; }
      $cur .= $c; next;
    }
    if ($st eq 'q_esc') { $cur .= $c; $st = 'q'; next; }
  }
  push @args, $cur if $st ne 'ws';
  return @args;
}

sub opt {
  my ($args, $name) = @_;
  for (my $i = 0; $i < @$args - 1; $i++) { return $args->[$i + 1] if $args->[$i] eq $name; }
  return undef;
}

sub fail { print STDERR "security: $_[0]\n"; return 1; }

sub run {
  my @a = @_;
  my $cmd = shift @a;
  return 0 unless defined $cmd;
  if (($ENV{FAKE_SECURITY_FAIL} // '') eq $cmd) { return fail("$cmd: The operation couldn't be completed. (injected)"); }
  my $kc = $a[-1];
  if ($cmd eq 'create-keychain') {
    return fail("SecKeychainCreate $kc: A keychain with the same name already exists.") if -e $kc;
    spew($kc, opt(\@a, '-p'));
    return 0;
  }
  if ($cmd eq 'unlock-keychain' || $cmd eq 'set-key-partition-list') {
    my $pw = $cmd eq 'unlock-keychain' ? opt(\@a, '-p') : opt(\@a, '-k');
    return fail("SecKeychainOpen $kc: The specified keychain could not be found.") unless -e $kc;
    return fail("SecKeychainUnlock $kc: The user name or passphrase you entered is not correct.") if slurp($kc) ne $pw;
    print "attributes:\n    \"labl\"<blob>=\"signing identity\"\n" if $cmd eq 'set-key-partition-list';
    return 0;
  }
  if ($cmd eq 'set-keychain-settings') {
    return fail("SecKeychainOpen $kc: The specified keychain could not be found.") unless -e $kc;
    return 0;
  }
  if ($cmd eq 'import') {
    my $file = $a[0];
    my $target = opt(\@a, '-k');
    return fail("SecKeychainItemImport: Unable to open $file") unless -e $file;
    return fail("SecKeychainItemImport: MAC verification failed during PKCS12 import (wrong password?)")
      if (opt(\@a, '-P') // '') ne ($ENV{FAKE_P12_PASSWORD} // '');
    spew("$target.identities", "$ENV{FAKE_IDENTITY_SHA1} \"$ENV{FAKE_IDENTITY_NAME}\"\n");
    print "1 identity imported.\n";
    return 0;
  }
  if ($cmd eq 'list-keychains') {
    my @s = @a;
    my $i = 0;
    $i++ while $i < @s && $s[$i] ne '-s';
    if ($i < @s) { spew("$state/search", join('', map { "$_\n" } @s[$i + 1 .. $#s])); return 0; }
    print map { "    \"$_\"\n" } split(/\n/, slurp("$state/search") // '');
    return 0;
  }
  if ($cmd eq 'find-identity') {
    my $ids = -e "$kc.identities" ? slurp("$kc.identities") : '';
    my $n = 0;
    for my $l (split /\n/, $ids) { $n++; print "  $n) $l\n"; }
    print "     $n valid identities found\n";
    return 0;
  }
  if ($cmd eq 'delete-keychain') {
    return fail("SecKeychainDelete: The specified keychain could not be found.") unless -e $kc;
    unlink $kc, "$kc.identities";
    return 0;
  }
  return fail("unknown command \"$cmd\"");
}

logline('argv: ', join(' ', map { "[$_]" } @ARGV));
if (@ARGV && $ARGV[0] eq '-i') {
  my $result = 0;
  while (my $line = <STDIN>) {
    chomp $line;
    logline('stdin: ', $line);
    my @args = split_line($line);
    $result = run(@args);
    print STDERR "$args[0]: returned $result\n" if $result;
  }
  exit $result;
}
exit run(@ARGV);
