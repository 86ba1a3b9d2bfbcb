# packaging.cmake — what `cmake --install` and `cpack` add beyond the
# targets' own install rules: the CMake config package of libforkpool and
# the Debian package (cpack -G DEB).

include(CMakePackageConfigHelpers)

set(FORKPOOL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/forkpool)
install(EXPORT forkpoolTargets NAMESPACE forkpool:: DESTINATION ${FORKPOOL_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/forkpoolConfig.cmake.in
  ${PROJECT_BINARY_DIR}/forkpoolConfig.cmake INSTALL_DESTINATION ${FORKPOOL_CMAKE_DIR})
# 0.x: a minor version may change the ABI, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/forkpoolConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/forkpoolConfig.cmake
              ${PROJECT_BINARY_DIR}/forkpoolConfigVersion.cmake
        DESTINATION ${FORKPOOL_CMAKE_DIR})

# The Debian package: cpack -G DEB in a tree configured with the prefix /usr
# (as tests/run.sh's build/ is). One package with the daemon, the tool, the
# library and its development files; its Depends come from dpkg-shlibdeps.
set(FORKPOOL_PACKAGE_MAINTAINER "forkpool maintainers" CACHE STRING
    "The Maintainer field of the Debian package (Name <address>)")
set(CPACK_PACKAGE_NAME forkpool)
set(CPACK_PACKAGE_VENDOR forkpool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "share a capped set of database connections among prefork worker processes")
set(CPACK_PACKAGE_DESCRIPTION
    "forkpoold leases real PostgreSQL and MySQL/MariaDB connections to the worker processes of
prefork servers, which receive the database socket itself (libforkpool): the number of
connections is capped across every process, with no proxy in the query path.")
set(CPACK_PACKAGE_CONTACT ${FORKPOOL_PACKAGE_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES OFF)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libforkpool's own shlibs file (contrib/debian/triggers runs ldconfig).
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
# The postinst creates the user and /run/forkpool with systemd-sysusers and
# systemd-tmpfiles (systemd's, or the standalone ones on a host without it);
# dpkg-shlibdeps adds the libraries. forkpoold is a systemd service (it runs
# without systemd too).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-sysusers, systemd | systemd-tmpfiles")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS systemd)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/contrib/debian/postinst
    ${PROJECT_SOURCE_DIR}/contrib/debian/prerm
    ${PROJECT_SOURCE_DIR}/contrib/debian/postrm
    ${PROJECT_SOURCE_DIR}/contrib/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
