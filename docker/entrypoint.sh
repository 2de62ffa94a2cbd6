#!/bin/sh
# coldswap's server image entrypoint (images built by docker/build-image.sh,
# no registry), for MariaDB and MySQL alike. On an empty datadir: initialize
# it and set root's password from the file COLDSWAP_ROOT_PASSWORD_FILE names
# (a read-only mount: the password is never in the container's environment,
# where `docker inspect` would show it). root@'%' only: root@127.0.0.1 would
# shadow it for connections arriving through the port mapping. Then run the
# server in the foreground with the arguments given.
set -e
DATADIR=/var/lib/mysql
mkdir -p "$DATADIR" /run/mysqld /var/lib/mysql-files
if [ -x /usr/sbin/mariadbd ]; then server=mariadbd; else server=mysqld; fi
if [ ! -d "$DATADIR/mysql" ]; then
  pwfile=${COLDSWAP_ROOT_PASSWORD_FILE:-}
  if [ -z "$pwfile" ] || [ ! -r "$pwfile" ]; then
    echo "coldswap-entrypoint: COLDSWAP_ROOT_PASSWORD_FILE does not name a readable file" >&2
    exit 2
  fi
  pw=$(sed "s/'/''/g" "$pwfile")
  if [ "$server" = mariadbd ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$DATADIR" \
      --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >/dev/null
    local_root="DROP USER IF EXISTS 'root'@'localhost';"
  else
    mysqld --no-defaults --initialize-insecure --user=root --datadir="$DATADIR" >/dev/null 2>&1 \
      || { echo "coldswap-entrypoint: mysqld --initialize-insecure failed" >&2; exit 2; }
    local_root="ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';"
  fi
  umask 077
  cat > /run/mysqld/init.sql <<SQL
SET SESSION sql_log_bin=0;
DROP USER IF EXISTS 'root'@'127.0.0.1';
DROP USER IF EXISTS 'root'@'::1';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
$local_root
SQL
  set -- --init-file=/run/mysqld/init.sql "$@"
  echo "coldswap-entrypoint: initialized $DATADIR" >&2
fi
unset COLDSWAP_ROOT_PASSWORD_FILE
exec $server --no-defaults --user=root --datadir="$DATADIR" --socket=/run/mysqld/mysqld.sock \
  --port=3306 --bind-address=0.0.0.0 --skip-name-resolve "$@"
