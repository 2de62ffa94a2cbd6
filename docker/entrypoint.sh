#!/bin/sh
# coldswap's MariaDB image entrypoint (images built by docker/build-image.sh,
# no registry). On an empty datadir: install the system tables and set the
# root password from COLDSWAP_ROOT_PASSWORD (root@'%' only; root@127.0.0.1
# would shadow it for connections arriving through the port mapping). Then
# run the server in the foreground with the arguments given.
set -e
DATADIR=/var/lib/mysql
mkdir -p "$DATADIR" /run/mysqld /var/lib/coldswap
if [ ! -d "$DATADIR/mysql" ]; then
  if [ -z "$COLDSWAP_ROOT_PASSWORD" ]; then
    echo "coldswap-entrypoint: COLDSWAP_ROOT_PASSWORD is not set" >&2
    exit 2
  fi
  mariadb-install-db --no-defaults --user=root --datadir="$DATADIR" \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >/dev/null
  pw=$(printf '%s' "$COLDSWAP_ROOT_PASSWORD" | sed "s/'/''/g")
  cat > /run/mysqld/init.sql <<SQL
SET SESSION sql_log_bin=0;
DROP USER IF EXISTS 'root'@'127.0.0.1';
DROP USER IF EXISTS 'root'@'::1';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
SQL
  set -- --init-file=/run/mysqld/init.sql "$@"
  echo "coldswap-entrypoint: initialized $DATADIR" >&2
fi
unset COLDSWAP_ROOT_PASSWORD
exec mariadbd --no-defaults --user=root --datadir="$DATADIR" --socket=/run/mysqld/mysqld.sock \
  --port=3306 --bind-address=0.0.0.0 --skip-name-resolve "$@"
