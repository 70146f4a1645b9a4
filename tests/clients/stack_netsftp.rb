# Ruby net-ssh / net-sftp (Capistrano, Rails tooling): one login and the stack check's file work
# (see tests/integration/server_stacks.rs).
# usage: stack_netsftp.rb HOST PORT USER key:PATH|password:PW LOCAL REMOTE
require "net/sftp"

host, port, user, auth, local, remote = ARGV
kind, secret = auth.split(":", 2)
opts = { port: port.to_i, verify_host_key: :never, non_interactive: true, timeout: 30 }
if kind == "key"
  opts.merge!(keys: [secret], keys_only: true, auth_methods: ["publickey"])
else
  opts.merge!(password: secret, auth_methods: ["password"])
end
Net::SFTP.start(host, user, **opts) do |sftp|
  sftp.mkdir!(remote)
  sftp.upload!(File.join(local, "up.bin"), "#{remote}/up.bin")
  sftp.dir.foreach(remote) { |e| puts "ls: #{e.name}" unless %w[. ..].include?(e.name) }
  sftp.rename!("#{remote}/up.bin", "#{remote}/moved.bin")
  sftp.download!("#{remote}/moved.bin", File.join(local, "back.bin"))
  sftp.mkdir!("#{remote}/sub")
  sftp.rmdir!("#{remote}/sub")
  sftp.upload!(File.join(local, "small.txt"), "#{remote}/small.txt")
  sftp.remove!("#{remote}/small.txt")
end
puts "ok net-ssh #{Net::SSH::Version::STRING}"
