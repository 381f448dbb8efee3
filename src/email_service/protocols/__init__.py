"""email_service.protocols"""
