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
